"""Benefit at training time: refuse it without randomisation, validate it on an RCT.

:func:`check_benefit_allowed` runs before anything is read into features or written: a
config with a ``benefit`` section on a study that is not known to be randomised stops with
exit code 2 and the reason (:func:`~.benefit.require_randomised`). :func:`benefit_summary`
runs the pre-specified primary benefit model's validation
(:mod:`~.benefit_validation`) and returns JSON-safe numbers for the training summary.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..config import ExperimentConfig, load_config
from ..errors import ConfigError
from ..features import build_features
from ..io import check_outputs, write_json, write_table
from ..modeling.benefit import (
    benefit_data,
    check_exported,
    comparisons,
    export_by_regimen,
    predict_benefit_by_regimen,
    require_randomised,
)
from ..modeling.benefit_validation import RiskDifference, risk_difference, validate_benefit
from ..study import StudySource, load_study
from ..study.files import SIMULATION_FILE, input_paths, simulation_flag


def study_randomised(data_dir: str | Path) -> bool | None:
    """``randomised`` from the study's metadata (None when it has none or does not say; a
    value other than true/false is a DataError naming the file and the key)."""
    return simulation_flag(data_dir, "randomised")


def check_benefit_allowed(config: ExperimentConfig, data_dir: str | Path) -> None:
    """Stop (ConfigError, exit 2) when ``config`` asks for benefit on non-randomised data."""
    if config.benefit is None:
        return
    if config.benefit.randomised is not None:
        require_randomised(config.benefit.randomised, "the config (benefit.randomised)")
    else:
        require_randomised(
            study_randomised(data_dir), f"the study metadata ({Path(data_dir) / SIMULATION_FILE})"
        )


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item"):  # numpy scalars
        return _json_safe(obj.item())
    return obj


def benefit_metrics(summary: dict) -> dict[str, float]:
    """The benefit numbers of a training summary as MLflow metrics (finite values only)."""
    pairs = {"benefit_ate": summary["ate"], "benefit_ate_ci_low": summary["ate_ci"][0],
             "benefit_ate_ci_high": summary["ate_ci"][1], "c_for_benefit": summary["c_for_benefit"],
             "c_for_benefit_ci_low": summary["c_for_benefit_ci"][0],
             "c_for_benefit_ci_high": summary["c_for_benefit_ci"][1]}  # fmt: skip
    return {k: float(v) for k, v in pairs.items() if v is not None and math.isfinite(v)}


def benefit_summary(config: ExperimentConfig, features, patients) -> tuple[dict, object]:
    """The primary benefit model's validation: summary keys and the validation itself."""
    b = config.benefit
    data = benefit_data(features, patients, b.treatment_column, b.control_value)
    validation = validate_benefit(data.X, data.treated, data.y, data.mx1, kind=b.primary,
                                  seed=config.model.seed, folds=b.folds, n_boot=b.bootstrap)  # fmt: skip
    full = _json_safe(validation.summary())
    flat = {k: full[k] for k in ("ate", "ate_ci", "c_for_benefit", "c_for_benefit_ci")}
    flat["mx1_verdict"] = full.get("mx1_verdict", "not applicable (no baseline MX1+ feature)")
    if len(data.regimens) > 1:  # the validation above pools the regimens: any MSC vs control
        validation.by_regimen = regimen_effects(data)
        flat["ate_by_regimen"] = ate_by_regimen(validation.by_regimen)
    return {**flat, "benefit": full}, validation


def regimen_effects(data) -> dict[str, RiskDifference]:
    """Each randomised regimen's ATE against the control arm (difference of response
    proportions, Newcombe 95% interval), for a study that randomised several."""
    control = data.y[data.treated == 0]
    return {r: risk_difference(data.y[data.arm == r], control) for r in data.regimens}


def ate_by_regimen(effects: dict[str, RiskDifference]) -> dict[str, dict]:
    """:func:`regimen_effects` as JSON-safe summary entries."""
    return _json_safe({
        r: {"ate": rd.estimate, "ate_ci": [rd.low, rd.high], "n_treated": rd.n1, "n_control": rd.n0}
        for r, rd in effects.items()
    })  # fmt: skip


def _training_data(config: ExperimentConfig, train_dir: str | Path):
    """The benefit data of the randomised study ``train_dir`` (refused unless randomised)."""
    check_benefit_allowed(config, train_dir)
    b = config.benefit
    study = load_study(train_dir, config.singlecell)
    return benefit_data(
        build_features(config, study), study.patients, b.treatment_column, b.control_value
    )


def score_benefit(
    config: ExperimentConfig, train_dir: str | Path, new_dir: str | Path, *, n_boot: int = 100
):
    """Predicted benefit (with 95% refit intervals) of every patient of ``new_dir`` from the
    primary benefit model fitted on the randomised study ``train_dir``; one row per patient,
    ``patient_id`` first (ids as written)."""
    data = _training_data(config, train_dir)
    new = build_features(config, load_study(new_dir, config.singlecell), labels=False)
    missing = [c for c in data.X.columns if c not in new.table.columns]
    if missing:
        raise ConfigError(
            f"data: the new cohort lacks baseline features the benefit model uses: {missing}"
        )
    out = predict_benefit_by_regimen(data, new.table[data.X.columns], kind=config.benefit.primary,
                                     seed=config.model.seed, n_boot=n_boot)  # fmt: skip
    out.insert(0, "patient_id", new.table["patient_id"].astype(str).to_numpy())
    return out


def _benefit_config(config_path):
    cfg = load_config(config_path)
    if cfg.benefit is None:
        raise ConfigError(
            "benefit: the config has no 'benefit' section (treatment column, control value)"
        )
    return cfg


def score_benefit_job(config_path, train_data, data, out, *, n_boot: int = 100):
    """``score-benefit``: check the outputs first, predict, write ``out`` atomically.

    Returns the table, the training study's directory and the primary model's name.
    """
    cfg = _benefit_config(config_path)
    train_dir = Path(cfg.data) if train_data is None else Path(train_data)
    check_outputs(
        [out], inputs=[*input_paths(train_dir), *input_paths(data), config_path], option="out"
    )
    table = score_benefit(cfg, train_dir, data, n_boot=n_boot)
    write_table(table, out)
    return table, train_dir, cfg.benefit.primary


#: What the scoring job says of ``predicted_benefit`` (beside ASSOCIATION_NOTE's opposite).
EFFECT_NOTE = ("predicted_benefit = P(response | MSC) - P(response | standard care) from a benefit model fitted "
               "on a randomised study: an effect, not an association; its interval is the model's (refits "
               "within arms), not the patient's own benefit")  # fmt: skip


def fit_benefit_job(config_path, train_data, out, *, n_boot: int = 100) -> dict:
    """``fit-benefit``: the primary benefit model fitted on the randomised study and its
    refits (one model per regimen against the control arm when the study randomised
    several), written as JSON for ``score --benefit-model`` (aggregates and coefficients
    only: no patient rows)."""
    cfg = _benefit_config(config_path)
    train_dir = Path(cfg.data) if train_data is None else Path(train_data)
    check_outputs([out], inputs=[*input_paths(train_dir), config_path], option="out")
    data = _training_data(cfg, train_dir)
    doc = export_by_regimen(data, kind=cfg.benefit.primary, seed=cfg.model.seed, n_boot=n_boot)
    doc["provenance"] = {
        "config": str(config_path), "experiment": cfg.name, "training_study": str(train_dir),
        "randomised": True, "n_patients": int(len(data.y)), "n_treated": int(data.treated.sum()),
        "seed": cfg.model.seed, "note": EFFECT_NOTE,
        "input_sha256": StudySource(train_dir).sha256,
    }  # fmt: skip
    write_json(doc, out)
    return doc


def n_refits(doc: dict) -> int:
    """The fewest refits kept by any comparison of an exported benefit model."""
    return min(len(refits) for _, _, refits in comparisons(doc))


def read_benefit_model(path) -> dict:
    """An exported benefit model (``fit-benefit``'s JSON); ConfigError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
        doc = json.loads(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--benefit-model {path}: cannot read it: {err}") from err
    doc = check_exported(doc, f"--benefit-model {path}")
    doc["file_sha256"] = hashlib.sha256(
        data
    ).hexdigest()  # provenance, and the executors' cache key
    return doc
