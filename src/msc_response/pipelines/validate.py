"""``msc-response validate``: a registered model on a labelled cohort it never saw.

Features and labels come from the project's one feature builder with the config stored
with the model; the numbers are :func:`msc_response.reporting.external.external_performance`; the page has the
training report's layout (the cohort's sections, then the validation); the run is
logged to MLflow (experiment ``<model>-validation``) with its metrics linked to the model
version's logged model and to the cohort's features (no ids, no rows). With
``recalibrate``, a logistic recalibration is estimated and registered as a new version
of the same model, linked to the one it recalibrates.

Everything that can be wrong with the input is checked before anything is written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plotting, tracking
from ..config import config_from_dict
from ..errors import DataError, Problem
from ..features import features_from_study
from ..io import check_outputs
from ..modeling import curves
from ..modeling.fitted import FittedModel, write_spec
from ..modeling.predict import missing_inputs
from ..registry.load import load_model
from ..registry.registration import features_dataset, log_features, log_pyfunc
from ..reporting import external, figures
from ..reporting import study_sections as sections
from ..reporting.page import Page
from ..reporting.subgroups import MIN_PER_CLASS, for_display, subgroup_performance
from ..study import load_study
from .report import reports_root


@dataclass
class ValidationRun:
    """What :func:`validate_registered_model` did: the numbers, the page, the MLflow run, a new version."""

    model_uri: str
    name: str
    version: str
    result: external.ExternalValidation
    page: Path
    run_id: str
    recalibration: external.Recalibration | None = None
    recalibrated_version: str | None = None


def _cohort(model, data: Path):
    """The cohort's study, labelled features and predictions; a DataError for every unusable cohort."""
    config = config_from_dict(model.spec["config"])
    study = load_study(data, config.singlecell)
    tests = {str(t) for t in study.labs["test"].cat.categories}
    has_cells = study.cells is not None and len(study.cells) > 0
    missing = missing_inputs(model.feature_spec, tests, has_cells, Path(study.files["labs"]).name)
    if missing:
        raise DataError(missing)
    fs = features_from_study(study, config, labels=True, bad_rows="error")
    ep = config.endpoint
    if fs.table.empty:
        why = "; ".join(f"{k}: {v}" for k, v in fs.flow["excluded"].items())
        raise DataError([Problem(Path(study.files["labs"]).name, None, None,
                                 f"no patient of the cohort can be labelled for the model's endpoint "
                                 f"({ep.score}, day {ep.followup_day}): {why}")])  # fmt: skip
    y = fs.table["response"].to_numpy(dtype=int)
    if y.sum() in (0, len(y)):
        what = "no responders" if y.sum() == 0 else "no non-responders"
        raise DataError([Problem("features", None, "response",
                                 f"endpoint {ep.score!r}: {what} among {len(y)} labelled patients; the model "
                                 "cannot be validated on one outcome class")])  # fmt: skip
    p = model.fitted.predict_proba(fs.table)
    return config, study, fs, y, p


def validate_registered_model(model_uri: str, data: str | Path, *, out: str | Path | None = None,
                              recalibrate: bool = False, root: str | Path | None = None,
                              n_boot: int | None = None) -> ValidationRun:  # fmt: skip
    """Validate the model at ``model_uri`` on the labelled cohort in ``data`` (see the module docs).

    Raises
    ------
    ConfigError
        The model cannot be loaded.
    DataError
        The cohort is bad, lacks what the model needs, has no follow-up for the model's
        endpoint, has a single outcome class, or cannot be recalibrated. Nothing is
        written or logged then.
    """
    data = Path(data)
    if out is not None:
        check_outputs([Path(out) / "index.html"], inputs=[data], option="out")
    model = load_model(model_uri)
    config, study, fs, y, p = _cohort(model, data)
    ev = external.external_performance(y, p, thresholds=config.model.net_benefit_thresholds, n_boot=n_boot,
                                       seed=config.model.seed)  # fmt: skip
    recal = None
    if recalibrate:
        try:
            recal = external.logistic_recalibration(y, p)
        except ValueError as err:
            raise DataError([Problem("features", None, "response", str(err))]) from None

    default = reports_root(root) / model.name / f"validation-v{model.version}-{data.name}"
    out_dir = Path(out) if out is not None else default
    page = write_validation_report(
        model, config, study, fs, y, p, ev, out_dir, data_dir=data, recalibration=recal
    )
    run_id, new_version = _log(model, config, fs, y, ev, page, data, recal, root)
    return ValidationRun(model_uri, model.name, model.version, ev, page, run_id, recal, new_version)


def validation_table(ev: external.ExternalValidation) -> pd.DataFrame:

    rows = []
    for name, value in ev.values.items():
        lo, hi = ev.intervals.get(name, (np.nan, np.nan))
        rows.append({"metric": external.metric_label(name), "estimate": value, "95% CI low": lo,
                     "95% CI high": hi, "note": ev.problems.get(name, "")})  # fmt: skip
    return pd.DataFrame(rows)


def write_validation_report(model, config, study, fs, y, p, ev, out_dir: Path, *, data_dir: Path,
                            recalibration=None) -> Path:  # fmt: skip
    """The validation page: the cohort's sections, then discrimination, calibration, decision curve."""
    simulated = study.simulated or bool(model.spec.get("trained_on_simulated_data"))
    ctx = sections.StudyContext.build(config, study, fs, data_dir)
    page = Page(f"External validation: {model.name} version {model.version} on {data_dir.name}",
                simulated=simulated, subtitle=f"{ev.n} labelled patients, {ev.outcome.text()} responders")  # fmt: skip
    for add in (sections.add_data_source, sections.add_eligibility, sections.add_outcome, sections.add_flow,
                sections.add_table1):  # fmt: skip
        add(page, ctx)
    sections.add_missing(page, ctx, (model.spec["kind"],))
    s = page.section("External validation")
    s.paragraph(f"Model {model.name} version {model.version} ({model.spec.get('model_name', model.spec['kind'])}), "
                "with the config stored with it, on a cohort it never saw. Features and labels come from the "
                "same code as in training. AUROC interval: DeLong; other intervals: 2.5th-97.5th percentiles "
                f"over {ev.n_boot} bootstrap resamples of the patients.")  # fmt: skip
    s.definitions({"AUROC": ev.auroc.text(), "responders": ev.outcome.text(),
                   "mean predicted probability": f"{ev.mean_predicted:.3f}"})  # fmt: skip
    s.table(validation_table(ev), "Performance on the validation cohort")
    s.figure(
        plotting.plot_roc(curves.roc_curve(y, p), f"AUROC {ev.auroc.estimate:.2f}"), "ROC curve"
    )
    s.figure(plotting.plot_calibration(ev.calibration_curve, model.name, y=y, p=p),
             "smoothed calibration curve with its 95% band")  # fmt: skip
    s.figure(
        plotting.plot_decision(ev.decision_curve, model.name),
        "decision curve with a bootstrap 95% band",
    )
    shown = ev.decision_curve[
        ev.decision_curve["threshold"].round(2).isin([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    ]
    s.table(
        shown.rename(columns={"lower": "95% band low", "upper": "95% band high"}),
        "Net benefit",
        digits=3,
    )
    g = page.section("Performance by subgroup")
    groups = fs.table[["patient_id"] + (["arm"] if "arm" in fs.table else [])].merge(
        study.patients[[c for c in ("patient_id", "sex", "etiology") if c in study.patients]],
        on="patient_id",
    )
    sub = subgroup_performance(groups, y, p)
    g.paragraph(
        f"'too few' where a group has fewer than {MIN_PER_CLASS} responders or non-responders."
    )
    g.figure(figures.plot_subgroups(sub), "subgroup AUROCs")
    g.table(for_display(sub), digits=3)
    if recalibration is not None:
        r = page.section("Logistic recalibration")
        r.paragraph(f"logit(p_recalibrated) = {recalibration.intercept:.4f} + {recalibration.slope:.4f} x logit(p): "
                    f"intercept 95% CI {recalibration.intercept_ci[0]:.3f} to {recalibration.intercept_ci[1]:.3f}, "
                    f"slope {recalibration.slope_ci[0]:.3f} to {recalibration.slope_ci[1]:.3f} (Wald). "
                    "Registered as a new version of the same model; the ranking of patients, and so the "
                    "AUROC, is unchanged.")  # fmt: skip
    sections.add_paper_view(page, ctx)
    sections.add_model_card(page, ctx, extra={"model": f"{model.name} version {model.version}"})
    return page.write(out_dir)


def _metrics(ev: external.ExternalValidation) -> dict[str, float]:
    out = {"n_patients": float(ev.n), "n_events": float(ev.outcome.x)}
    for name, value in ev.values.items():
        if np.isfinite(value):
            out[f"external_{name}"] = float(value)
        lo, hi = ev.intervals.get(name, (np.nan, np.nan))
        if np.isfinite(lo) and np.isfinite(hi):
            out[f"external_{name}_ci_low"], out[f"external_{name}_ci_high"] = float(lo), float(hi)
    return out


def _log(model, config, fs, y, ev, page: Path, data: Path, recal, root) -> tuple[str, str | None]:
    import mlflow

    client = tracking.client(root)
    version = client.get_model_version(model.name, model.version)
    X = fs.table[model.feature_columns].astype(float)
    with tracking.using(root):
        exp_id = tracking.experiment_id(f"{model.name}-validation")
        with mlflow.start_run(
            experiment_id=exp_id, run_name=f"validate v{model.version} on {data.name}"
        ) as run:
            mlflow.set_tags({"msc_response.stage": "validate", "model_name": model.name,
                             "model_version": model.version, "model_uri": f"models:/{model.name}/{model.version}",
                             "cohort": data.name, "data.simulated": str(bool(fs.simulated)).lower()})  # fmt: skip
            dataset = features_dataset(X, y, f"{data.name}-features")
            log_features(dataset, "validation")
            mlflow.log_metrics(
                _metrics(ev), model_id=getattr(version, "model_id", None) or None, dataset=dataset
            )
            mlflow.log_dict({name: why for name, why in ev.problems.items()}, "problems.json")
            mlflow.log_artifacts(str(page.parent), "report")
            run_id = run.info.run_id
            new_version = None
            if recal is not None:
                new_version = _register_recalibrated(model, recal, X, run_id, data.name, ev.n)
                mlflow.set_tag("recalibrated_version", new_version)
    client.set_model_version_tag(model.name, model.version, f"external_validation.{data.name}",
                                 f"run {run_id}: AUROC {ev.auroc.text()}")  # fmt: skip
    return run_id, new_version


def _register_recalibrated(model, recal, X: pd.DataFrame, run_id: str, cohort: str, n: int) -> str:
    """Log the recalibrated model (same model file, spec with the recalibration) and register it."""
    spec = dict(model.spec)
    spec["recalibration"] = {"intercept": recal.intercept, "slope": recal.slope, "recalibrates_version": model.version,
                             "cohort": cohort, "n_patients": n, "validation_run": run_id}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp)
        model_file = art / Path(model.model_file).name
        shutil.copyfile(model.model_file, model_file)
        spec_path = write_spec(spec, art / "model_spec.json")
        info = log_pyfunc(FittedModel.load(spec, model_file), model_file, spec_path, X,
                          name="recalibrated_model", registered_model_name=model.name)  # fmt: skip
    client = tracking.client()
    version = str(info.registered_model_version)
    tags = {"recalibrates": model.version, "recalibration_intercept": f"{recal.intercept:.6f}",
            "recalibration_slope": f"{recal.slope:.6f}", "recalibration_cohort": cohort,
            "validation_run": run_id, "model": model.spec.get("model_name", model.spec["kind"])}  # fmt: skip
    for k, v in tags.items():
        client.set_model_version_tag(model.name, version, k, v)
    client.update_model_version(model.name, version, description=(
        f"Version {model.version} recalibrated on cohort {cohort} (n={n}): logit(p') = "
        f"{recal.intercept:.4f} + {recal.slope:.4f} x logit(p)."))  # fmt: skip
    return version


def summary(run: ValidationRun) -> dict:
    """A JSON-safe summary of a validation (what the CLI prints)."""
    ev = run.result
    return json.loads(json.dumps({
        "model": f"models:/{run.name}/{run.version}", "n_patients": ev.n, "responders": ev.outcome.text(),
        "auroc": ev.auroc.text(), "page": str(run.page), "run_id": run.run_id,
        "recalibrated_version": run.recalibrated_version,
    }))  # fmt: skip
