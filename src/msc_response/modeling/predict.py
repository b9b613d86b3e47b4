"""Batch scoring: every patient of a study directory scored, explained and accounted for.

Features are built by the same :func:`~msc_response.features.features_from_study` code
and the same experiment config that were stored with the model. The study is streamed
into patient partitions (bounded memory at any size); output rows follow the
partitions, in input order within each, and are identical for identical input.
Outputs are written to temporary files and moved into place only when every patient
has been scored or rejected: a killed job leaves the previous output or none.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tracking
from ..config import config_from_dict
from ..dataset import is_simulated, load_study
from ..errors import ConfigError, DataError, Problem
from ..features import (
    BASELINE_SCORES,
    REGIMEN_FEATURES,
    features_from_study,
    patient_flow,
    sidecar,
    slug,
)
from ..io import ChunkWriter, atomic_path, table_format, write_json, write_table
from ..stream import partition_study

ASSOCIATION_NOTE = (
    "probability_under_* columns are model associations under each trial regimen, not causal effects: "
    "the model learned from who was given what, not from randomised comparisons"
)
DEFAULT_PATIENTS_PER_PART = 100_000
OUTPUT_COLUMNS = [
    "patient_id",
    "model_name",
    "model_version",
    "model_uri",
    "probability",
    "predicted_response",
]


@dataclass
class LoadedModel:
    """A registered response model with what scoring needs to know about it."""

    uri: str
    name: str
    version: str
    pyfunc: object
    spec: dict

    @property
    def fitted(self):
        return self.pyfunc.unwrap_python_model().fitted


def load_model(uri: str) -> LoadedModel:
    """Load a model by URI (``models:/NAME@alias``, ``models:/NAME/VERSION`` or ``runs:/...``).

    Raises
    ------
    ConfigError
        The model or alias does not exist, is not an msc-response model, or belongs to
        another experiment than its registered name says.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking.configure()
    name, version = "", ""
    try:
        if uri.startswith("models:/"):
            from mlflow import MlflowClient

            ref = uri.removeprefix("models:/")
            client = MlflowClient()
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = str(client.get_model_version_by_alias(name, alias).version)
            elif "/" in ref:
                name, version = ref.split("/", 1)
                client.get_model_version(name, version)
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        raise ConfigError(f"--model {uri!r}: cannot load it: {str(err).splitlines()[0]}") from None
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else None
    spec = getattr(inner, "spec", None)
    if not isinstance(spec, dict) or "feature_columns" not in spec or "config" not in spec:
        raise ConfigError(
            f"--model {uri!r}: not an msc-response model (no feature config stored with it)"
        )
    if name and spec.get("experiment") != name:
        raise ConfigError(
            f"--model {uri!r}: the model belongs to experiment {spec.get('experiment')!r}, not {name!r}"
        )
    return LoadedModel(uri, name or spec.get("experiment", ""), version, model, spec)


def trial_regimens() -> list[tuple[str, dict[str, float]]]:
    """The regimen features of each arm of the phase Ia/Ib trial."""
    from ..simulate import TRIAL_ARMS

    return [
        (a.name, {"dose_per_infusion_1e8": a.dose_per_infusion / 1e8, "n_infusions": float(a.n_infusions),
                  "cumulative_dose_1e8": a.dose_per_infusion * a.n_infusions / 1e8,
                  "interval_days": float(a.interval_days)})
        for a in TRIAL_ARMS
    ]  # fmt: skip


def _check_compatible(model: LoadedModel, lab_units: dict[str, str], file: str) -> None:
    """Units of tests the project cannot convert must match the training data's."""
    trained = model.spec.get("lab_units", {})
    problems = [
        Problem(
            file,
            None,
            "unit",
            f"test {t!r} is in {u!r} here but the model was trained on {trained[t]!r}",
        )
        for t, u in sorted(lab_units.items())
        if t in trained and trained[t] != u
    ]
    if problems:
        raise DataError(problems)


def _predict(model: LoadedModel, X: pd.DataFrame, engine: str, spark) -> np.ndarray:
    if engine == "spark":
        return _spark_predict(model, X, spark)
    return model.pyfunc.predict(X)["probability"].to_numpy(dtype=float)


def score(
    model_uri: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    explain: int = 0,
    regimens: str | None = None,
    engine: str = "local",
    patients_per_part: int = DEFAULT_PATIENTS_PER_PART,
    log_to_mlflow: bool = True,
) -> dict:
    """Score every patient of ``data_dir``; returns the run summary (also written beside ``out``)."""
    t0 = time.perf_counter()
    out = Path(out)
    try:
        fmt = table_format(out)
    except ValueError as err:
        raise ConfigError(f"--out: {err}") from None
    if engine not in ("local", "spark"):
        raise ConfigError(f"--engine: expected 'local' or 'spark', got {engine!r}")
    if regimens not in (None, "all"):
        raise ConfigError(f"--regimens: expected 'all', got {regimens!r}")
    if explain < 0:
        raise ConfigError(f"--explain: expected a number >= 0, got {explain!r}")
    model = load_model(model_uri)
    config = config_from_dict(model.spec["config"])
    features = list(model.spec["feature_columns"])
    if regimens == "all" and not set(REGIMEN_FEATURES) & set(features):
        raise ConfigError("--regimens all: this model does not use the dosing regimen")
    threshold = float(model.spec["threshold"])
    timings: dict[str, float] = {"load_model_s": round(time.perf_counter() - t0, 3)}
    spark = _spark_session() if engine == "spark" else None

    counts = {"patients_in_input": 0, "scored": 0, "rejected": 0}
    seen_tests: set[str] = set()
    has_cells = False
    rejected_parts = []
    t_feat = t_pred = t_explain = t_write = 0.0
    with tempfile.TemporaryDirectory(prefix="msc-score-", dir=out.parent if out.parent.exists() else None) as tmp, \
            atomic_path(out) as tmp_out:  # fmt: skip
        t = time.perf_counter()
        parts = partition_study(data_dir, patients_per_part, Path(tmp), config.singlecell)
        timings["partition_s"] = round(time.perf_counter() - t, 3)
        writer = ChunkWriter(tmp_out, fmt)
        for part in parts.parts:
            t = time.perf_counter()
            study = load_study(part, config.singlecell, display=parts.files)
            n_part = len(study.patients)
            if n_part == 0:
                continue
            _check_compatible(model, study.lab_units, parts.files["labs"])
            seen_tests |= set(map(str, study.labs["test"].unique()))
            has_cells |= study.cells is not None and len(study.cells) > 0
            fs = features_from_study(study, config, labels=False)
            X = fs.table.reindex(columns=features).astype(
                float
            )  # a test absent from this part: NaN
            t_feat += time.perf_counter() - t
            counts["patients_in_input"] += n_part
            rejected_parts.append(fs.exclusions)
            if X.empty:
                continue
            t = time.perf_counter()
            p = _predict(model, X, engine, spark)
            result = pd.DataFrame({
                "patient_id": fs.table["patient_id"].to_numpy(),
                "model_name": model.name, "model_version": model.version, "model_uri": model.uri,
                "probability": np.round(p, 6),
                "predicted_response": (p >= threshold).astype(int),
            })  # fmt: skip
            if regimens == "all":
                for arm, values in trial_regimens():
                    Xr = X.copy()
                    for k, v in values.items():
                        if k in Xr:
                            Xr[k] = v
                    result[f"probability_under_{slug(arm)}"] = np.round(
                        _predict(model, Xr, engine, spark), 6
                    )
            t_pred += time.perf_counter() - t
            if explain:
                t = time.perf_counter()
                from ..explain import top_contributions

                contrib, _ = model.fitted.contributions(X)
                top = top_contributions(contrib, X[model.fitted.feature_columns], explain)
                result = pd.concat([result, top.reset_index(drop=True)], axis=1)
                t_explain += time.perf_counter() - t
            t = time.perf_counter()
            writer.write(result)
            t_write += time.perf_counter() - t
            counts["scored"] += len(result)
        writer.close(empty_columns=OUTPUT_COLUMNS)
        missing = _missing_inputs(features, seen_tests, has_cells, parts.files)
        if missing:
            raise DataError(missing)
        rejected = (
            pd.concat(rejected_parts, ignore_index=True)
            if rejected_parts
            else pd.DataFrame(columns=["patient_id", "reason"])
        )
        counts["rejected"] = len(rejected)
        reasons = patient_flow(counts["patients_in_input"], rejected, None)["excluded"]
        write_table(rejected, sidecar(out, ".rejected.csv"))
    if spark is not None:
        spark.stop()
    timings.update(features_s=round(t_feat, 3), predict_s=round(t_pred, 3), explain_s=round(t_explain, 3),
                   write_s=round(t_write, 3), total_s=round(time.perf_counter() - t0, 3))  # fmt: skip
    total = timings["total_s"]
    summary = {
        "model_uri": model.uri, "registered_model": model.name, "version": model.version,
        "model_trained_on_simulated_data": bool(model.spec.get("trained_on_simulated_data")),
        "data_simulated": is_simulated(data_dir),
        "input_sha256": parts.sha256, "output": out.name, "rejected_file": sidecar(out, ".rejected.csv").name,
        "counts": counts, "rejected_by_reason": reasons, "engine": engine, "explain": explain,
        "regimens": regimens, "threshold": threshold, "timings": timings,
        "patients_per_second": round(counts["patients_in_input"] / total, 1) if total else None,
    }  # fmt: skip
    if regimens == "all":
        summary["note"] = ASSOCIATION_NOTE
    write_json(summary, sidecar(out, ".summary.json"))
    if log_to_mlflow:
        _log_scoring_run(model, summary)
    return summary


def _missing_inputs(features, seen_tests, has_cells, files) -> list[Problem]:
    problems = []
    for f in features:
        if f.startswith("baseline_") and f.endswith("_fraction") and not has_cells:
            problems.append(
                Problem(
                    "cells", None, None, f"the model uses {f!r} but the study has no cell fractions"
                )
            )
    known_scores = {f"baseline_{s}" for s in BASELINE_SCORES}
    tests_needed = {f.removeprefix("baseline_") for f in features
                    if f.startswith("baseline_") and not f.endswith("_fraction") and f not in known_scores}  # fmt: skip
    present = {slug(t) for t in seen_tests}
    for t in sorted(tests_needed - present):
        problems.append(
            Problem(
                files["labs"],
                None,
                "test",
                f"the model needs test {t!r}, which this study never reports",
            )
        )
    return problems


def _log_scoring_run(model: LoadedModel, summary: dict) -> None:
    import mlflow

    exp = tracking.experiment_id(f"{model.name}-scoring" if model.name else "scoring")
    with mlflow.start_run(experiment_id=exp, run_name=f"score {model.name} v{model.version}"):
        mlflow.set_tags({"msc_response.stage": "score", "model_uri": model.uri, "engine": summary["engine"],
                         "data.simulated": str(summary["data_simulated"]).lower()})  # fmt: skip
        mlflow.log_metrics(
            {**{f"n_{k}": v for k, v in summary["counts"].items()}, **summary["timings"]}
        )
        mlflow.log_dict(summary, "scoring_summary.json")


# ----------------------------------------------------------------------------------------
# Spark engine


def _spark_session():
    """A local Spark session (``local[2]``, no UI) using this environment's Python."""
    import os
    import sys

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    master = os.environ.get("MSC_RESPONSE_SPARK_MASTER", "local[2]")
    return (
        SparkSession.builder.master(master)
        .appName("msc-response-score")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def _spark_predict(model: LoadedModel, X: pd.DataFrame, spark) -> np.ndarray:
    """Probabilities through ``mlflow.pyfunc.spark_udf`` on the same feature matrix."""
    import mlflow
    from pyspark.sql import functions as F

    cols = list(X.columns)
    frame = X.assign(_order=np.arange(len(X)))
    sdf = spark.createDataFrame(frame)
    udf = mlflow.pyfunc.spark_udf(spark, model.uri, result_type="double", env_manager="local")
    scored = sdf.withColumn("probability", udf(F.struct(*[F.col(c) for c in cols])))
    result = scored.select("_order", "probability").toPandas().sort_values("_order")
    return result["probability"].to_numpy(dtype=float)
