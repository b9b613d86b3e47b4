"""``log_and_register``: the MLflow part of training (runs, model, registry, the gate).

One parent run per training (params: the config, validation effort, git commit, package
versions; the feature table as an ``mlflow.data`` input with digest and schema, no rows;
the patient flow and the dropped columns; the primary model's metrics), one nested run
per model (its metrics and aggregate curves; its out-of-fold predictions, one row per
patient, only when ``model.log_patient_level_predictions`` says so), SHAP plots of the
primary model, and the primary model itself as a pyfunc "model from code" with
``model_spec.json``. The input example is synthetic (the feature medians), so no
patient's row reaches the store. Files are logged one by one, never a folder.

The new version gets aliases from :func:`msc_response.modeling.gate.decide`; against an
existing champion, the champion's stored recipe is re-validated here on the same data.
The comparison and the aliases cannot interleave with another training's: on a local
store both happen under :func:`~msc_response.tracking.registry_lock`; on a server the
champion is read again before the aliases are set, and the comparison re-run if it has
changed. The gate decision (:data:`~.tracking.TAG_CHAMPION_DECISION`) is the version's last tag: a
version without it is not usable (:func:`~.registry.load_model` refuses it), and the
next training marks such versions of killed runs :data:`~.gate.INCOMPLETE_TAG`.

The parent run is named by model, endpoint and time (:func:`run_name`); it and the model
version carry the model card's summary as their description (:func:`card_summary`:
aggregates only, no patient's data).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plotting, processes, provenance, tracking
from ..config import config_from_dict
from ..domain import INTENDED_USE
from ..features import build_features
from ..io import work_dir, write_json
from ..modeling import gate
from ..modeling.explain import global_importance
from ..modeling.fit import ModelValidation, TrainingResult, validate_model
from ..modeling.fitted import write_spec
from ..modeling.metrics import ROC_AUC, VALIDATED, reported
from ..modeling.models import ModelSpec
from ..modeling.summary import NOT_APPLICABLE, model_numbers
from .load import decision_recorded, record_decision

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")


def log_and_register(
    result: TrainingResult,
    *,
    data_dir: str | Path | None = None,
    root: str | Path | None = None,
    summary_path: str | Path | None = None,
) -> dict:
    """Log ``result`` to MLflow, register its primary model and apply the promotion gate.

    Parameters
    ----------
    result : TrainingResult
        From :func:`msc_response.modeling.fit.fit`.
    data_dir : path, optional
        The study the features came from: needed only when the current champion was
        trained with other feature settings, to rebuild its features for re-validation.
    root : path, optional
        Where the local MLflow store lives (``MLFLOW_TRACKING_URI`` overrides it).
    summary_path : path, optional
        Also write the summary JSON there.

    Returns
    -------
    dict
        The training summary with the registry fields (``version``, ``aliases``,
        ``champion_decision``, ``run_id``, ...).
    """

    config = result.config
    summary = result.summary()
    # the workers draw the figures while this process opens the store and logs the run and the
    # model (opening a new store, MLflow's migrations, took 2 s at the start of the logging)
    result.render_figures(wait=False)
    with tracking.using(root) as uri:
        with (
            tracking.job_run(config.name, run_name(config), root) as (parent, abandoned),
            _scratch(uri, config.name) as tmp,
        ):
            mark_incomplete_versions(config.name)
            exp_id = parent.info.experiment_id
            registered = _log_and_register(result, summary, exp_id, data_dir, tmp)
            run_id = parent.info.run_id
    summary.update({**registered, "run_id": run_id, "tracking_uri": uri,
                    "abandoned_runs_ended": [a.run_id for a in abandoned]})  # fmt: skip
    if summary_path is not None:
        write_json(summary, summary_path)
    return summary


@contextlib.contextmanager
def _scratch(uri: str, name: str):
    """Where the run's artifacts are written before they are logged: beside a local store
    (a killed run's leftovers are removed by the next), else the system's temporary folder."""
    if uri.startswith("sqlite:///"):
        with work_dir(Path(uri.removeprefix("sqlite:///")).parent / f"train-{name}") as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def _log_and_register(
    result: TrainingResult, summary: dict, exp_id: str, data_dir, tmp: Path
) -> dict:
    """Inside the parent run: log everything, register the primary model, apply the gate."""
    import mlflow

    config = result.config
    _log_parent(result, summary)
    model_info = _log_model(result, tmp)
    version = str(model_info.registered_model_version)
    for mv in result.models.values():  # the figures: the same bytes as the report's
        _log_model_run(result, mv, exp_id, tmp)
    _log_shap(result, tmp)
    processes.checkpoint("train:registered")
    with tracking.registry_lock(mlflow.get_tracking_uri()) as locked:
        while True:  # compare-and-set: the champion compared with is the one replaced
            seen = _champion_version(config.name)
            champion, champion_problem = _against_champion(result, data_dir, seen)
            decision = gate.decide(
                n=len(result.y),
                riley_min_n=result.riley["min_n"],
                baseline=result.baseline_comparison,
                champion=champion,
                champion_problem=champion_problem,
            )
            if locked or _champion_version(config.name) == seen:
                break
        aliases = _register(config.name, version, result, decision)
    status = gate.status_of(aliases, exploratory=result.below_riley)
    card = card_summary(summary, status, decision.reason)
    mlflow.set_tags({"primary_model": config.model.primary, tracking.TAG_CHAMPION_DECISION: decision.reason,
                     "registered_version": version, "exploratory": str(result.below_riley).lower(),
                     "model_status": status, tracking.TAG_DESCRIPTION: card})  # fmt: skip
    mlflow.MlflowClient().update_model_version(config.name, version, description=card)
    if champion is not None:
        mlflow.log_metrics(_flat("gate_champion", champion.to_dict()))
    return {
        "gate_against_champion": champion.to_dict() if champion else None,
        "registered_model": config.name,
        "version": version,
        "model_uri": f"models:/{config.name}/{version}",
        "aliases": aliases,
        "champion_decision": decision.reason,
    }


def run_name(config) -> str:
    """A training run's name that tells it apart: primary model, endpoint, UTC time to the second."""
    ep = config.endpoint
    when = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{config.model.primary} {ep.score} day {ep.followup_day} {when}"


def card_summary(summary: dict, status: str, decision: str) -> str:
    """The model card in a few Markdown lines, for MLflow's run and model-version descriptions.

    From the training summary: counts and validated numbers only, never a patient's data.
    """
    auroc = summary[reported(VALIDATED, ROC_AUC)]
    lo, hi = summary.get(reported(VALIDATED, ROC_AUC, "ci")) or (None, None)
    auroc_text = "not estimable" if auroc is None else (
        f"{auroc:.3f}" + (f" (95% CI {lo:.3f} to {hi:.3f})" if lo is not None and hi is not None else " (no interval)"))  # fmt: skip
    data = "SIMULATED data (not patients)" if summary["simulated_data"] else "patient data"
    lines = [
        f"**{summary['experiment']}**: {summary['primary_model']}, status **{status}**; trained on {data}.",
        f"n = {summary['n_patients']} patients, {summary['n_events']} responders; Riley's minimum "
        f"n = {summary['riley_min_n']} for {summary['riley_parameters']} parameters.",
        f"Validated AUROC (.632+ bootstrap): {auroc_text}.",
        f"Registry decision: {decision}.",
        INTENDED_USE,
    ]  # fmt: skip
    return "\n\n".join(lines)


@contextlib.contextmanager
def _no_schema_hint():
    # MLflow hints about integer columns while profiling a dataset; every feature is float
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def features_dataset(X: pd.DataFrame, y, name: str | None = None):
    """The features and outcome (``response``) as the MLflow dataset a run logs; its digest
    identifies the data (the report's remake checks it)."""
    import mlflow

    table = X.assign(response=y)
    with _no_schema_hint():
        dataset = mlflow.data.from_pandas(table, targets="response", name=name)
    # MLflow infers whether each column may be missing by a Python loop over every value (2.3 s
    # at 100,000 patients): the same schema with one vectorised check per column, put where
    # MLflow caches it (``schema`` is a cached_property; were it a plain property in a later
    # MLflow, its own inference would run, slower but the same)
    dataset.__dict__["schema"] = _schema(table)
    return dataset


def _schema(table: pd.DataFrame):
    """MLflow's ``_infer_schema`` of a table of numeric columns (its column types; a column is
    required when no value is missing), without its loop over every value."""
    from mlflow.types.schema import ColSpec, Schema
    from mlflow.types.utils import _infer_pandas_column, _infer_required

    def required(col: pd.Series) -> bool:
        return not col.isna().any() if col.dtype.kind in "biuf" else _infer_required(col)

    return Schema([ColSpec(type=_infer_pandas_column(table[c]), name=c, required=required(table[c]))
                   for c in table.columns])  # fmt: skip


def log_features(dataset, context: str) -> None:
    """Log ``dataset`` (:func:`features_dataset`) as an input of the active run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with _no_schema_hint():
        try:
            mlflow.log_input(dataset, context=context)
        except MlflowException as err:
            # Two trainings (or validations) of one experiment on the same data at once: MLflow
            # looks the dataset up, then inserts it, so one insert can meet the other's new row
            # (UNIQUE experiment, name, digest; its transaction is rolled back). The row exists
            # now: logging again links this run to it. Found by
            # test_two_trainings_at_once_each_compare_with_the_champion_they_replace.
            if not _lost_a_dataset_race(err):
                raise
            mlflow.log_input(dataset, context=context)


def _lost_a_dataset_race(err: Exception) -> bool:
    text = str(err).lower()
    return "datasets" in text and ("unique constraint" in text or "duplicate key" in text)


def _flat(prefix: str, comparison: dict) -> dict[str, float]:
    """The gate's AUROC difference and its interval as MLflow metrics (see :func:`run_metrics`)."""
    keys = ("roc_auc_difference", "roc_auc_difference_ci")
    return run_metrics({f"{prefix}_{k}": comparison[k] for k in keys})[0]


def run_metrics(numbers: dict) -> tuple[dict[str, float], dict[str, str]]:
    """Summary numbers as MLflow metrics (``_ci`` pairs become ``_ci_low``/``_ci_high``) and tags.

    A "not applicable" statistic becomes a tag, a number that could not be estimated is
    left out (its reason is in the summary and the run's ``problems`` tags).
    """
    out, tags = {}, {}
    for key, value in numbers.items():
        if isinstance(value, list) and len(value) == 2:
            for part, v in zip(("low", "high"), value, strict=True):
                if v is not None:
                    out[f"{key}_{part}"] = float(v)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
        elif value == NOT_APPLICABLE:
            tags[key] = NOT_APPLICABLE
    return out, tags


def _log_parent(result: TrainingResult, summary: dict) -> None:
    import mlflow

    config = result.config
    commit = provenance.git_commit()
    params = tracking.flatten(config.to_dict())
    params.update({f"version.{k}": v for k, v in provenance.package_versions().items()})
    params.update({"git_commit": commit, "validation.repeats": result.plan.repeats,
                   "validation.bootstrap": result.plan.n_boot, "validation.folds": result.plan.folds,
                   "validation.method": summary["validation"]["method"][:500]})  # fmt: skip
    log_features(features_dataset(result.X, result.y, f"{config.name}-features"), "training")
    fs = result.features
    mlflow.log_dict({"flow": fs.flow, "feature_columns": result.feature_columns,
                     "dropped_columns": result.dropped_columns, "lab_units": fs.lab_units},
                    "patient_flow.json")  # fmt: skip
    numbers, tags = run_metrics(model_numbers(result.primary))
    numbers.update({"n_patients": len(result.y), "n_events": int(result.y.sum()),
                    "riley_min_n": result.riley["min_n"],
                    "n_dropped_columns": len(result.dropped_columns)})  # fmt: skip
    if result.baseline_comparison is not None:
        numbers["baseline_validated_roc_auc"] = result.models[
            result.baseline_comparison.reference
        ].roc_auc
        numbers.update(_flat("gate_baseline", result.baseline_comparison.to_dict()))
    tags.update({tracking.TAG_STAGE: "train", "data.simulated": str(result.simulated).lower(),
                 "git_commit": commit})  # fmt: skip
    tracking.log_batch(metrics=numbers, params=params, tags=tags)


def _log_model_run(result: TrainingResult, mv: ModelValidation, exp_id: str, tmp: Path) -> None:
    numbers, tags = run_metrics(model_numbers(mv))
    tags.update({f"problem.{k}": v[:250] for k, v in mv.problems.items()})
    tags.update({"role": mv.spec.role, "kind": mv.spec.kind, "status": result.status(mv.name)})
    with tracking.start_run(experiment_id=exp_id, run_name=mv.name, nested=True):
        tracking.log_batch(metrics=numbers, tags=tags, params={
            "model": mv.name, "n_features": len(mv.spec.features), "seed": result.plan.seed})  # fmt: skip
        out = tmp / mv.name
        out.mkdir()
        written = [out / "decision_curve.csv"]
        result.decision_curve(mv.name).round(6).to_csv(written[0], index=False)
        if result.config.model.log_patient_level_predictions:  # opted in: patient-level rows
            oof = pd.DataFrame({"index": np.arange(len(result.y)), "response": result.y})
            for r in range(mv.oof.shape[0]):
                oof[f"oof_probability_repeat_{r + 1}"] = np.round(mv.oof[r], 6)
            written.append(out / "oof_predictions.csv")
            oof.to_csv(written[-1], index=False)
        for name, kind in (("roc_curve.png", "roc"), ("calibration.png", "calibration"),
                           ("decision_curve.png", "decision_curve")):  # fmt: skip
            written.append(out / name)  # the same picture as the report's (rendered once)
            plotting.save_figure(result.figure_png(kind, mv.name), written[-1])
        tracking.log_files(written, "validation")


def _log_shap(result: TrainingResult, tmp: Path) -> None:
    shap_dir = tmp / "shap"
    shap_dir.mkdir()
    written = [shap_dir / f"shap_{kind}.png" for kind in ("beeswarm", "bar")]
    for kind, path in zip(("beeswarm", "bar"), written, strict=True):
        plotting.save_figure(result.figure_png(f"shap_{kind}"), path)
    contrib, _ = result.shap_values()
    written.append(shap_dir / "shap_importance.csv")
    global_importance(contrib, result.fitted.feature_columns).to_csv(written[-1], index=False)
    tracking.log_files(written, "shap")


def synthetic_example(X: pd.DataFrame) -> pd.DataFrame:
    """One made-up input row: each column's median (no patient's row is logged)."""
    return X.median().to_frame().T.astype(float)


def _log_model(result: TrainingResult, tmp: Path):
    config, fitted, fs = result.config, result.fitted, result.features
    art = tmp / "model_artifacts"
    art.mkdir()
    model_path = fitted.save(art)
    spec = {
        "experiment": config.name,
        "config": config.to_dict(),
        "kind": fitted.kind,
        "model_name": config.model.primary,
        "feature_columns": fitted.feature_columns,
        "all_feature_columns": list(fs.feature_columns),
        "dropped_columns": result.dropped_columns,
        "lab_units": fs.lab_units,
        "feature_spec": fs.feature_spec,
        "threshold": config.model.threshold,
        "validated_roc_auc": result.primary.roc_auc,
        "exploratory": result.below_riley,
        "trained_on_simulated_data": result.simulated,
    }
    spec_path = write_spec(spec, art / "model_spec.json")
    return log_pyfunc(fitted, model_path, spec_path, result.X[fitted.feature_columns],
                      name="model", registered_model_name=config.name)  # fmt: skip


def log_pyfunc(fitted, model_file: Path, spec_path: Path, X: pd.DataFrame, *, name: str,
               registered_model_name: str):  # fmt: skip
    """Log the served model (:data:`PYFUNC_FILE` over ``model_file`` and its spec) to the
    active run and register it; the input example is synthetic (:func:`synthetic_example`
    of ``X``), so no patient's row is logged. Returns MLflow's ``ModelInfo``."""
    import mlflow
    from mlflow.models import infer_signature

    example = synthetic_example(X)
    signature = infer_signature(
        example, pd.DataFrame({"probability": fitted.predict_proba(example)})
    )
    versions = provenance.package_versions()
    requirements = [f"{k}=={v}" for k, v in versions.items() if k != "msc-response"]
    with _checks_this_project_makes_itself():
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={"model": str(model_file), "model_spec": str(spec_path)},
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=registered_model_name,
        )


@contextlib.contextmanager
def _checks_this_project_makes_itself():
    """Two of MLflow's checks while it logs the model left out (the same files are logged).

    - The model's requirements against the installed packages: the requirements *are* the
      installed versions (:func:`~msc_response.provenance.package_versions`), so the check
      cannot find a mismatch; it maps every module of the environment to its package first
      (``packages_distributions``: every installed package's file list read), which was 5 s
      of a 20 s training on the shared machine.
    - Serving the input example: MLflow loads the logged pyfunc back (which runs that
      requirements check again, 2.6 s of CPU of a training on the shared machine) and
      predicts the synthetic example, and on failure only logs a warning. The pyfunc is
      this package's own fixed file; that a registered version loads through
      ``mlflow.pyfunc.load_model`` and predicts is tested (``tests/pipelines/test_train.py``).
    """
    from mlflow.models import utils as model_utils
    from mlflow.utils import environment

    patched = [(environment, "warn_dependency_requirement_mismatches"),
               (model_utils, "_validate_serving_input")]  # fmt: skip
    # an AttributeError here: MLflow renamed one (a pinned version is upgraded)
    saved = [getattr(module, attr) for module, attr in patched]
    for module, attr in patched:
        setattr(module, attr, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for (module, attr), original in zip(patched, saved, strict=True):
            setattr(module, attr, original)


def current_champion(name: str):
    """The champion version of registered model ``name``, or None when it has none.

    Only a missing alias means "no champion": any other registry error propagates.
    """
    from mlflow import MlflowClient

    version = _champion_version(name)
    return None if version is None else MlflowClient().get_model_version(name, version)


def _champion_version(name: str) -> str | None:
    """The version the ``champion`` alias points to now (None: no champion)."""
    from mlflow import MlflowClient

    version = MlflowClient().get_registered_model(name).aliases.get(gate.ALIAS_CHAMPION)
    return None if version is None else str(version)


def _against_champion(
    result: TrainingResult, data_dir, champion_version: str | None
) -> tuple[gate.Comparison | None, str | None]:
    """Re-validate the champion's (``champion_version``) stored recipe on this training's data and samples."""
    if result.below_riley or champion_version is None:
        return None, None  # exploratory whatever the champion is; or nothing to compare with
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version(result.config.name, champion_version)
    import mlflow

    spec_file = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{result.config.name}/{champion.version}/artifacts/model_spec.json"
    )
    stored = json.loads(Path(spec_file).read_text())
    champ_config = config_from_dict(stored["config"])
    table = _champion_features(result, champ_config, data_dir)
    missing = [c for c in stored["feature_columns"] if c not in table.columns]
    if missing:
        return (
            None,
            f"the champion (version {champion.version}) needs columns these data lack: {missing!r}",
        )
    ids = result.features.table["patient_id"].astype(str).to_numpy()
    if not np.array_equal(table["patient_id"].astype(str).to_numpy(), ids):
        table = table.set_index(table["patient_id"].astype(str)).reindex(ids)
        if table[stored["feature_columns"]].isna().all(axis=1).any():
            return None, (f"the champion's features (version {champion.version}) do not cover the "
                          "same patients: it cannot be compared on identical data")  # fmt: skip
    X = table[stored["feature_columns"]].astype(float).reset_index(drop=True)
    spec = ModelSpec(
        stored["model_name"], stored["kind"], "candidate", tuple(stored["feature_columns"])
    )
    # the champion's recipe (its config: model settings) under this training's plan: the same
    # splits, bootstrap samples and seeds as the new model
    validated = validate_model(spec, X, result.y, config=champ_config, plan=result.plan)
    label = f"champion v{champion.version} ({stored['model_name']})"
    return gate.against_champion(result.primary, validated, label), None


def _champion_features(result: TrainingResult, champ_config, data_dir) -> pd.DataFrame:
    """The champion's feature table: this training's when the feature settings agree."""

    def settings(c):
        d = c.to_dict()
        return {k: v for k, v in d.items() if k not in ("name", "data", "model")}

    if settings(champ_config) == settings(result.config):
        return result.features.table
    if data_dir is None:
        raise ValueError(
            "log_and_register: the champion was trained with other feature settings; pass "
            "data_dir= so that its features can be rebuilt from the same study"
        )
    return build_features(champ_config, data_dir).table


def _register(
    name: str, version: str, result: TrainingResult, decision: gate.Decision
) -> list[str]:
    """Tag ``version``, set its aliases, and record the gate decision last (see the module docs)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(
        name, version, "validated_roc_auc", f"{result.primary.roc_auc:.6f}"
    )
    client.set_model_version_tag(name, version, "model", result.config.model.primary)
    held = client.get_registered_model(name).aliases
    # where the aliases pointed before: a run killed before its decision is recorded gets
    # them put back by the next training's clean-up (mark_incomplete_versions)
    client.set_model_version_tag(name, version, PREVIOUS_ALIASES_TAG,
                                 json.dumps({a: str(held[a]) for a in decision.aliases if a in held}))  # fmt: skip
    for alias in decision.aliases:
        client.set_registered_model_alias(name, alias, version)
    processes.checkpoint("train:aliased")
    record_decision(client, name, version, decision.reason)
    return sorted(client.get_model_version(name, version).aliases)


#: The aliases a version's registration moved, as JSON ``{alias: version it pointed to}``.
PREVIOUS_ALIASES_TAG = "msc_response.previous_aliases"


def mark_incomplete_versions(name: str) -> list[str]:
    """Mark the versions of ``name`` that a killed run left without a gate decision; returns them.

    A version whose run no longer runs and that has no :data:`~.tracking.TAG_CHAMPION_DECISION` is
    tagged :data:`~.gate.INCOMPLETE_TAG` (kept: its files may be wanted, but it is never
    loaded for scoring), and any alias its run had moved to it is put back where it
    pointed before. Versions of running runs (another training now) are left alone.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        held = client.get_registered_model(name).aliases
    except MlflowException:
        return []  # not registered yet
    marked = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        tags = mv.tags or {}
        if decision_recorded(tags) or gate.INCOMPLETE_TAG in tags:
            continue
        if mv.run_id and client.get_run(mv.run_id).info.status == "RUNNING":
            continue
        previous = json.loads(tags.get(PREVIOUS_ALIASES_TAG) or "{}")
        for alias, version in held.items():
            if str(version) != str(mv.version):
                continue
            if alias in previous:
                client.set_registered_model_alias(name, alias, previous[alias])
            else:
                client.delete_registered_model_alias(name, alias)
        client.set_model_version_tag(name, mv.version, gate.INCOMPLETE_TAG,
                                     "its training was stopped before the gate decision was recorded; "
                                     "not usable: train again")  # fmt: skip
        marked.append(str(mv.version))
    return marked


def scoring_alias(name: str, root: str | Path | None = None) -> str:
    """The alias to score with: ``champion`` if there is one, else ``exploratory``, else ``candidate``."""
    alias = gate.preferred_alias(tracking.client(root).get_registered_model(name).aliases)
    if alias is not None:
        return alias
    raise LookupError(
        f"registered model {name!r} has none of the aliases champion, exploratory, candidate"
    )
