"""Training: validate every candidate and baseline honestly, refit the best, track and register it.

One MLflow parent run per call, one nested run per model. The chosen model is the
candidate with the best validated (out-of-fold) AUROC; it is refit on all patients,
logged as a pyfunc "model from code" with its feature config, registered under the
experiment's name with alias ``candidate``, and promoted to ``champion`` only if its
validated AUROC beats the best baseline's and the current champion's.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tracking
from ..config import ExperimentConfig
from ..errors import DataError, Problem
from ..features import FeatureSet, build_features
from ..io import write_json
from ..study import is_simulated
from . import validation
from .fitted import FittedModel, write_spec
from .models import ModelSpec, make_estimator, model_specs

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")


def validation_effort(n: int, config: ExperimentConfig) -> tuple[int, int, int]:
    """Repeats of k-fold, bootstrap refits and CI resamples: full at small n, lighter when n is large."""
    repeats = config.model.repeats or (10 if n < 500 else 2 if n < 5000 else 1)
    n_boot = config.model.bootstrap or (200 if n < 500 else 50 if n < 5000 else 10)
    n_ci = 1000 if n < 5000 else 200
    return repeats, n_boot, n_ci


@dataclass
class ModelResult:
    spec: ModelSpec
    cv: validation.CrossValidation
    optimism: validation.Optimism
    run_id: str

    @property
    def validated_roc_auc(self) -> float:
        return self.cv.metrics["roc_auc"]


def _check_outcome(fs: FeatureSet, config: ExperimentConfig) -> None:
    y = fs.table["response"].to_numpy(dtype=int) if len(fs.table) else np.array([], dtype=int)
    n, events = len(y), int(y.sum())
    what = None
    if n == 0:
        what = "no eligible patients"
    elif events == 0:
        what = f"no responders among {n} eligible patients"
    elif events == n:
        what = f"no non-responders among {n} eligible patients"
    elif min(events, n - events) < 2:
        what = f"only {min(events, n - events)} patient in the smaller outcome class of {n}; validation needs at least 2"
    if what:
        raise DataError(
            [
                Problem(
                    "features",
                    None,
                    "response",
                    f"endpoint {config.endpoint.score!r}: {what}; nothing to learn",
                )
            ]
        )


def train(config: ExperimentConfig, data_dir: str | Path | None = None, *, summary_path: str | Path | None = None,
          root: str | Path | None = None, exclude_bad_patients: bool = False) -> dict:  # fmt: skip
    """Train, validate, track and register one experiment; returns the summary.

    Raises
    ------
    DataError
        Bad input data, or an endpoint with no responders or no non-responders (nothing
        is logged or registered then).
    """
    import mlflow

    data_dir = Path(config.data if data_dir is None else data_dir)
    fs = build_features(
        config, data_dir, labels=True, bad_rows="exclude" if exclude_bad_patients else "error"
    )
    _check_outcome(fs, config)
    X = fs.table[fs.feature_columns].astype(float)
    y = fs.table["response"].to_numpy(dtype=int)
    n, events = len(y), int(y.sum())
    n_minority = int(min(events, n - events))
    seed = config.model.seed
    repeats, n_boot, n_ci = validation_effort(n, config)
    riley = validation.riley_min_n(events / n, len(fs.feature_columns))
    warnings_ = []
    if n < riley["min_n"]:
        warnings_.append(
            f"{n} patients is below Riley's minimum sample size of {riley['min_n']} for {len(fs.feature_columns)} "
            "candidate predictors: treat every estimate as exploratory, with wide uncertainty"
        )
    simulated = is_simulated(data_dir)

    uri = tracking.configure(root)
    exp_id = tracking.experiment_id(config.name)
    results: dict[str, ModelResult] = {}
    with (
        mlflow.start_run(experiment_id=exp_id, run_name=f"train {config.name}") as parent,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tmp = Path(tmp)
        commit = tracking.git_commit()
        mlflow.set_tags(
            {
                "msc_response.stage": "train",
                "data.simulated": str(simulated).lower(),
                "git_commit": commit,
            }
        )
        params = tracking.flatten(config.to_dict())
        params.update({f"version.{k}": v for k, v in tracking.package_versions().items()})
        params["git_commit"] = commit
        params.update(
            {
                "validation.repeats": repeats,
                "validation.bootstrap": n_boot,
                "validation.folds": config.model.folds,
            }
        )
        mlflow.log_params(params)
        dataset = mlflow.data.from_pandas(
            X.assign(response=y), targets="response", name=f"{config.name}-features"
        )
        with warnings.catch_warnings():
            # MLflow hints about integer columns while profiling the dataset; every feature is float
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            mlflow.log_input(dataset, context="training")
        mlflow.log_dict(
            {"flow": fs.flow, "feature_columns": fs.feature_columns, "lab_units": fs.lab_units},
            "patient_flow.json",
        )
        for spec in model_specs(config, fs.feature_columns):
            results[spec.name] = _validate_one(
                exp_id, spec, config, X, y, n_minority, repeats, n_boot, n_ci, seed, tmp, simulated
            )
        chosen, best_baseline = select(results)
        fitted = refit(chosen.spec, config, X, y, n_minority, seed)
        contrib, base = fitted.contributions(X)
        from ..explain import global_importance, save_shap_plots

        shap_dir = tmp / "shap"
        shap_dir.mkdir()
        save_shap_plots(contrib, base, X[fitted.feature_columns], shap_dir, simulated=simulated)
        global_importance(contrib, fitted.feature_columns).to_csv(
            shap_dir / "shap_importance.csv", index=False
        )
        mlflow.log_artifacts(str(shap_dir), "shap")

        model_info = _log_model(fitted, fs, config, chosen, X, tmp, simulated)
        metrics = {
            "n_patients": n, "n_events": events, "riley_min_n": riley["min_n"],
            "validated_roc_auc": chosen.validated_roc_auc,
            "validated_roc_auc_ci_low": chosen.cv.roc_auc_ci[0], "validated_roc_auc_ci_high": chosen.cv.roc_auc_ci[1],
            "optimism_corrected_roc_auc": chosen.optimism.corrected["roc_auc"],
            "apparent_roc_auc": chosen.optimism.apparent["roc_auc"],
            "validated_brier": chosen.cv.metrics["brier"],
            "validated_calibration_intercept": chosen.cv.metrics["calibration_intercept"],
            "validated_calibration_slope": chosen.cv.metrics["calibration_slope"],
        }  # fmt: skip
        if best_baseline is not None:
            metrics["baseline_validated_roc_auc"] = best_baseline.validated_roc_auc
        mlflow.log_metrics(metrics)
        version, aliases, decision = _register(config.name, model_info, chosen, best_baseline)
        mlflow.set_tags(
            {
                "chosen_model": chosen.spec.name,
                "champion_decision": decision,
                "registered_version": version,
            }
        )
        run_id = parent.info.run_id

    summary = {
        "experiment": config.name,
        "simulated_data": simulated,
        "n_patients": n,
        "n_events": events,
        "patient_flow": fs.flow,
        "chosen_model": chosen.spec.name,
        "validated_roc_auc": round(chosen.validated_roc_auc, 4),
        "validated_roc_auc_ci": [round(v, 4) for v in chosen.cv.roc_auc_ci],
        "optimism_corrected_roc_auc": round(chosen.optimism.corrected["roc_auc"], 4),
        "apparent_roc_auc": round(chosen.optimism.apparent["roc_auc"], 4),
        "validated_brier": round(chosen.cv.metrics["brier"], 4),
        "validated_calibration_intercept": round(chosen.cv.metrics["calibration_intercept"], 4),
        "validated_calibration_slope": round(chosen.cv.metrics["calibration_slope"], 4),
        "baseline_validated_roc_auc": round(best_baseline.validated_roc_auc, 4)
        if best_baseline
        else None,
        "best_baseline": best_baseline.spec.name if best_baseline else None,
        "models": {
            name: {
                "role": r.spec.role,
                "validated_roc_auc": round(r.validated_roc_auc, 4),
                "validated_roc_auc_ci": [round(v, 4) for v in r.cv.roc_auc_ci],
                "optimism_corrected_roc_auc": round(r.optimism.corrected["roc_auc"], 4),
                "apparent_roc_auc": round(r.optimism.apparent["roc_auc"], 4),
            }
            for name, r in results.items()
        },  # fmt: skip
        "riley_min_n": riley["min_n"],
        "validation": {"folds": config.model.folds, "repeats": repeats, "bootstrap": n_boot},
        "registered_model": config.name,
        "version": version,
        "model_uri": f"models:/{config.name}/{version}",
        "aliases": aliases,
        "champion_decision": decision,
        "run_id": run_id,
        "tracking_uri": uri,
        "warnings": warnings_,
    }
    if summary_path is not None:
        write_json(summary, summary_path)
    return summary


def validate_model(
    spec: ModelSpec, config, X, y, n_minority, repeats, n_boot, n_ci, seed
) -> ModelResult:
    """Repeated cross-validation and bootstrap optimism of one model (no tracking)."""
    Xs = X[list(spec.features)]

    def make(s):
        return make_estimator(spec, config, s, n_minority)

    n_jobs = config.model.n_jobs
    cv = validation.cross_validate(
        make,
        Xs,
        y,
        folds=config.model.folds,
        repeats=repeats,
        seed=seed,
        n_boot_ci=n_ci,
        n_jobs=n_jobs,
    )
    opt = validation.bootstrap_optimism(make, Xs, y, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
    return ModelResult(spec, cv, opt, run_id="")


def select(results: dict[str, ModelResult]) -> tuple[ModelResult, ModelResult | None]:
    """The candidate with the best validated AUROC (first listed wins ties) and the best baseline."""
    names = list(results)
    candidates = [r for r in results.values() if r.spec.role == "candidate"]
    baselines = [r for r in results.values() if r.spec.role == "baseline"]
    chosen = max(candidates, key=lambda r: (r.validated_roc_auc, -names.index(r.spec.name)))
    best_baseline = max(baselines, key=lambda r: r.validated_roc_auc) if baselines else None
    return chosen, best_baseline


def _validate_one(
    exp_id, spec, config, X, y, n_minority, repeats, n_boot, n_ci, seed, tmp, simulated
) -> ModelResult:
    import mlflow

    from .. import report

    with mlflow.start_run(experiment_id=exp_id, run_name=spec.name, nested=True) as run:
        result = validate_model(spec, config, X, y, n_minority, repeats, n_boot, n_ci, seed)
        result.run_id = run.info.run_id
        cv, opt = result.cv, result.optimism
        mlflow.set_tags({"role": spec.role, "kind": spec.kind})
        mlflow.log_params({"model": spec.name, "n_features": len(spec.features), "seed": seed})
        mlflow.log_metrics({
            "validated_roc_auc": cv.metrics["roc_auc"],
            "validated_roc_auc_ci_low": cv.roc_auc_ci[0], "validated_roc_auc_ci_high": cv.roc_auc_ci[1],
            "validated_brier": cv.metrics["brier"],
            "validated_calibration_intercept": cv.metrics["calibration_intercept"],
            "validated_calibration_slope": cv.metrics["calibration_slope"],
            **{f"optimism_corrected_{k}": v for k, v in opt.corrected.items()},
            **{f"optimism_{k}": v for k, v in opt.optimism.items()},
            **{f"apparent_{k}": v for k, v in opt.apparent.items()},
        })  # fmt: skip
        p = np.nanmean(cv.oof, axis=0)
        out = tmp / spec.name
        out.mkdir()
        oof = pd.DataFrame(
            {"index": np.arange(len(y)), "response": y, "oof_probability_mean": np.round(p, 6)}
        )
        for r in range(cv.oof.shape[0]):
            oof[f"oof_probability_repeat_{r + 1}"] = np.round(cv.oof[r], 6)
        oof.to_csv(out / "oof_predictions.csv", index=False)
        label = f"{spec.name} (AUROC {cv.metrics['roc_auc']:.2f})"
        for name, ax in (
            ("roc_curve.png", report.plot_roc(report.roc_curve(y, p), label)),
            ("calibration.png", report.plot_calibration(report.calibration_curve(y, p), label)),
            ("decision_curve.png", report.plot_decision(report.decision_curve(y, p), label)),
        ):
            report.save_figure(ax, out / name, simulated=simulated)
        mlflow.log_artifacts(str(out), "validation")
        return result


def refit(spec: ModelSpec, config, X, y, n_minority, seed) -> FittedModel:
    """The model of ``spec`` fit on every patient."""
    est = make_estimator(spec, config, seed, n_minority)
    cols = list(spec.features)
    est.fit(X[cols], y)
    return FittedModel.from_estimator(spec.kind, cols, est)


def _log_model(
    fitted: FittedModel, fs: FeatureSet, config, chosen: ModelResult, X, tmp: Path, simulated: bool
):
    import mlflow
    from mlflow.models import infer_signature

    art = tmp / "model_artifacts"
    art.mkdir()
    model_path = fitted.save(art)
    spec = {
        "experiment": config.name,
        "config": config.to_dict(),
        "kind": fitted.kind,
        "model_name": chosen.spec.name,
        "feature_columns": fitted.feature_columns,
        "all_feature_columns": fs.feature_columns,
        "feature_spec": fs.feature_spec,
        "lab_units": fs.lab_units,
        "threshold": config.model.threshold,
        "validated_roc_auc": chosen.validated_roc_auc,
        "trained_on_simulated_data": simulated,
    }
    spec_path = write_spec(spec, art / "model_spec.json")
    example = X[fitted.feature_columns].head(3)
    signature = infer_signature(
        example, pd.DataFrame({"probability": fitted.predict_proba(example)})
    )
    versions = tracking.package_versions()
    requirements = [f"{k}=={v}" for k, v in versions.items() if k != "msc-response"]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"model": str(model_path), "model_spec": str(spec_path)},
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
        registered_model_name=config.name,
    )


def _register(name: str, model_info, chosen: ModelResult, best_baseline: ModelResult | None):
    """Alias the new version ``candidate``; make it ``champion`` if it beats the baseline and the champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = str(model_info.registered_model_version)
    auc = chosen.validated_roc_auc
    client.set_model_version_tag(name, version, "validated_roc_auc", f"{auc:.6f}")
    client.set_model_version_tag(name, version, "model", chosen.spec.name)
    client.set_registered_model_alias(name, tracking.ALIAS_CANDIDATE, version)
    reasons = []
    if best_baseline is not None and not auc > best_baseline.validated_roc_auc:
        reasons.append(f"validated AUROC {auc:.3f} does not beat the best baseline ({best_baseline.spec.name}, "
                       f"{best_baseline.validated_roc_auc:.3f})")  # fmt: skip
    try:
        current = client.get_model_version_by_alias(name, tracking.ALIAS_CHAMPION)
    except MlflowException:
        current = None
    if current is not None:
        champ_auc = float(current.tags.get("validated_roc_auc", "nan"))
        if not auc > champ_auc:
            reasons.append(
                f"validated AUROC {auc:.3f} does not beat the current champion (version {current.version}, {champ_auc:.3f})"
            )
    if reasons:
        decision = "not promoted: " + "; ".join(reasons)
    else:
        client.set_registered_model_alias(name, tracking.ALIAS_CHAMPION, version)
        decision = "promoted to champion"
    client.set_model_version_tag(name, version, "champion_decision", decision)
    aliases = sorted(client.get_model_version(name, version).aliases)
    return version, aliases, decision
