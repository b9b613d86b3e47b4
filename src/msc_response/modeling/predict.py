"""Batch scoring: every patient of a study directory scored, explained and accounted for.

Features are built by the same :func:`~msc_response.features.features_from_study` code
and the same experiment config that were stored with the model. The study is read in
chunks of patients (:mod:`msc_response.study.reader`): in one pass when its rows are grouped
by patient in the patients file's order, through hash partitions on disk otherwise.
Chunks are validated, featurised, scored and explained in ``jobs`` worker processes
(each LightGBM call on one thread, so the workers use the cores) and written in
chunk order, so output rows follow the patients file (or the partitions) and are
identical for identical input whatever the number of workers. Outputs are written to
temporary files and moved into place only when every patient has been scored or
rejected: a killed job leaves the previous output or none.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tracking
from ..config import config_from_dict
from ..domain import REGIMEN_FEATURES, arm_regimens
from ..errors import ConfigError, DataError, Problem
from ..features import (
    BASELINE_SCORES,
    EXCLUSION_COLUMNS,
    features_from_study,
    patient_flow,
    sidecar,
    slug,
    write_problems,
)
from ..io import ChunkWriter, atomic_path, encode_chunk, table_format, write_json, write_table
from ..study import NotGrouped, StudyChunk, StudySource, is_simulated, study_from_chunk
from ..study import policy as bad_rows_policy
from ..study.problems import empty_problems
from .fitted import FittedModel

ASSOCIATION_NOTE = (
    "probability_under_* columns are model associations under each trial regimen, not causal effects: "
    "the model learned from who was given what, not from randomised comparisons"
)
DEFAULT_PATIENTS_PER_PART = 50_000
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
    """A registered response model with what scoring needs to know about it.

    ``fitted`` is read from the model version's own artifacts (the LightGBM text model
    or the skops file, and ``model_spec.json``) - the same files and the same
    :class:`~msc_response.modeling.fitted.FittedModel` its MLflow pyfunc wraps. It is
    loaded on first use: when workers score, this process never needs it.
    """

    uri: str
    name: str
    version: str
    spec: dict
    model_file: str

    @functools.cached_property
    def fitted(self) -> FittedModel:
        return FittedModel.load(self.spec["kind"], self.spec["feature_columns"], self.model_file)


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
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        flavor = mlflow.models.Model.load(local).flavors.get("python_function", {})
    except (MlflowException, OSError) as err:
        raise ConfigError(f"--model {uri!r}: cannot load it: {str(err).splitlines()[0]}") from None
    artifacts = flavor.get("artifacts") or {}
    if not {"model", "model_spec"} <= set(artifacts):
        raise ConfigError(
            f"--model {uri!r}: not an msc-response model (no feature config stored with it)"
        )
    spec = json.loads((local / artifacts["model_spec"]["path"]).read_text())
    if "feature_columns" not in spec or "config" not in spec:
        raise ConfigError(f"--model {uri!r}: not an msc-response model (incomplete model_spec)")
    if name and spec.get("experiment") != name:
        raise ConfigError(
            f"--model {uri!r}: the model belongs to experiment {spec.get('experiment')!r}, not {name!r}"
        )
    model_file = local / artifacts["model"]["path"]
    if not model_file.is_file():
        raise ConfigError(f"--model {uri!r}: the model file {model_file.name!r} is missing")
    return LoadedModel(uri, name or spec.get("experiment", ""), version, spec, str(model_file))


# ----------------------------------------------------------------------------------------
# one chunk: validate, build features, predict, explain (in a worker process or inline


@dataclass
class _Scorer:
    """Everything needed to score a chunk; plain data, sent with every task to the workers."""

    kind: str
    feature_columns: list[str]
    model_file: str
    spec: dict
    paths: dict[str, str]  # the source of each table
    cells_derived: bool
    explain: int
    regimens: bool
    constants: dict[str, str]  # model name, version and URI, written on every row
    fmt: str

    def fitted(self) -> FittedModel:
        """The model, loaded once per process."""
        key = (self.kind, self.model_file)
        if key not in _FITTED:
            _FITTED[key] = FittedModel.load(self.kind, self.feature_columns, self.model_file)
        return _FITTED[key]


_FITTED: dict[tuple[str, str], FittedModel] = {}


@dataclass
class _ChunkResult:
    encoded: object  # the chunk's output rows, encoded for the writer (None: nobody scored)
    n_scored: int
    rejected: pd.DataFrame
    problems: pd.DataFrame
    n_patients: int
    tests: set[str]
    has_cells: bool
    seconds: dict[str, float]
    X: pd.DataFrame | None = None  # features, when another engine predicts
    ids: np.ndarray | None = None


def _score_chunk(scorer: _Scorer, chunk: StudyChunk, *, predict: bool = True) -> _ChunkResult:
    """Read, validate, featurise, predict, explain and encode one chunk.

    With ``predict=False`` the result carries the features instead (the Spark engine
    predicts them in the driver).
    """
    t = time.perf_counter()
    study = study_from_chunk(chunk, {k: Path(v) for k, v in scorer.paths.items()},
                             cells_derived=scorer.cells_derived,
                             reference_units=scorer.spec.get("lab_units", {}))  # fmt: skip
    seconds = {"read_validate_s": time.perf_counter() - t}
    t = time.perf_counter()
    # bad rows exclude their patient here; --strict turns any of them into an error at
    # the end of the job, once every chunk's problems are known
    fs = features_from_study(study, config_from_dict(scorer.spec["config"]), labels=False,
                             bad_rows="exclude")  # fmt: skip
    X = fs.table.reindex(columns=scorer.feature_columns).astype(float)  # absent test: NaN
    ids = fs.table["patient_id"].to_numpy()
    seconds["features_s"] = time.perf_counter() - t
    test = study.labs["test"]
    result = _ChunkResult(
        None, 0, fs.exclusions, fs.problems, len(study.patients),
        {str(c) for c in test.cat.categories},  # tests the study reports, usable rows or not
        study.cells is not None and len(study.cells) > 0, seconds,
    )  # fmt: skip
    if not predict:
        result.X, result.ids = X, ids
    elif not X.empty:
        t = time.perf_counter()
        fitted, contrib = scorer.fitted(), None
        if scorer.explain:  # one pass gives both: probability = sigmoid(base + sum)
            from scipy.special import expit

            contrib, base = fitted.contributions(X)
            p = expit(base + contrib.sum(axis=1))
            seconds["explain_s"] = time.perf_counter() - t
        else:
            p = fitted.predict_matrix(X.to_numpy())
            seconds["predict_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scored = _scored_frame(ids, p, scorer)
        if scorer.regimens:
            _add_regimens(scored, X, lambda Xr: fitted.predict_matrix(Xr.to_numpy()))
        if contrib is not None:
            scored = _with_explanations(scored, X, contrib, scorer.explain)
        seconds["predict_s"] = seconds.get("predict_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        result.encoded, result.n_scored = encode_chunk(scored, scorer.fmt), len(scored)
        seconds["encode_s"] = time.perf_counter() - t
    return result


def _scored_frame(ids, p: np.ndarray, scorer: _Scorer) -> pd.DataFrame:
    n = len(ids)
    constants = {  # categorical: one value on every row costs nothing to encode
        k: pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[v])
        for k, v in scorer.constants.items()
    }
    return pd.DataFrame({
        "patient_id": ids,
        **constants,
        "probability": np.round(p, 6),
        "predicted_response": (p >= float(scorer.spec["threshold"])).astype(int),
    })  # fmt: skip


def _with_explanations(scored: pd.DataFrame, X: pd.DataFrame, contrib: np.ndarray, k: int):
    from ..explain import top_contributions

    return pd.concat([scored, top_contributions(contrib, X, k).reset_index(drop=True)], axis=1)


def _add_regimens(scored: pd.DataFrame, X: pd.DataFrame, probability) -> None:
    """``probability_under_<arm>``: ``probability(X)`` with each trial arm's regimen set."""
    for arm, values in arm_regimens():
        Xr = X.copy()
        for k, v in values.items():
            if k in Xr:
                Xr[k] = v
        scored[f"probability_under_{slug(arm)}"] = np.round(probability(Xr), 6)


def _worker_context():
    """Workers forked from a fresh server that imported the scoring code once.

    Not plain ``fork``: this process has started threads (pyarrow, SQLAlchemy) by then.
    Not ``spawn``: each worker would import pandas, pyarrow, LightGBM and scikit-learn
    again (about 4 s of CPU each on this machine).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["msc_response.modeling.predict", "lightgbm"])
    return ctx


def _warm_up() -> None:
    """Make the pool start its workers while this process loads the model."""


# ----------------------------------------------------------------------------------------
# the job


@dataclass
class _Tally:
    counts: dict = field(
        default_factory=lambda: {"patients_in_input": 0, "scored": 0, "rejected": 0}
    )
    tests: set = field(default_factory=set)
    has_cells: bool = False
    rejected: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    seconds: collections.Counter = field(default_factory=collections.Counter)


def _run_chunks(chunks, scorer: _Scorer, writer: ChunkWriter, pool, workers: int, spark) -> _Tally:
    """Score every chunk (in the pool when there is one) and write results in chunk order."""
    tally = _Tally()
    pending: collections.deque = collections.deque()
    limit = 2 * workers  # chunks in flight: bounded memory

    def finish(result: _ChunkResult) -> None:
        tally.counts["patients_in_input"] += result.n_patients
        tally.tests |= result.tests
        tally.has_cells |= result.has_cells
        tally.rejected.append(result.rejected)
        if len(result.problems):
            tally.problems.append(result.problems)
        tally.seconds.update(result.seconds)
        if result.X is not None and not result.X.empty:  # Spark predicts here, in the driver
            t = time.perf_counter()
            scored = _spark_scored(scorer, result, spark)
            result.encoded, result.n_scored = encode_chunk(scored, scorer.fmt), len(scored)
            tally.seconds["predict_s"] += time.perf_counter() - t
        if result.encoded is None:
            return
        t = time.perf_counter()
        writer.write_encoded(result.encoded)
        tally.seconds["write_s"] += time.perf_counter() - t
        tally.counts["scored"] += result.n_scored

    try:
        for chunk in chunks:
            if pool is None:
                finish(_score_chunk(scorer, chunk, predict=spark is None))
                continue
            pending.append(pool.submit(_score_chunk, scorer, chunk))
            while len(pending) >= limit or (pending and pending[0].done()):
                finish(pending.popleft().result())
        while pending:
            finish(pending.popleft().result())
    finally:
        for f in pending:
            f.cancel()
    return tally


def score(
    model_uri: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    explain: int = 0,
    regimens: str | None = None,
    engine: str = "local",
    patients_per_part: int | None = None,
    jobs: int | None = None,
    strict: bool = False,
    log_to_mlflow: bool = True,
) -> dict:
    """Score every patient of ``data_dir``; returns the run summary (also written beside ``out``).

    A patient with a bad row (in a window the model's config reads) is rejected with the
    problem as the reason and everyone else is scored; every row problem is listed in
    ``FILE.problems.csv``. With ``strict``, any such problem is an error instead
    (:class:`DataError` with every problem; nothing is written).

    Parameters
    ----------
    patients_per_part : int, optional
        Patients per chunk (default :data:`DEFAULT_PATIENTS_PER_PART`).
    jobs : int, optional
        Worker processes (default: the machine's cores). 1 scores in this process; the
        Spark engine always builds features here and predicts through Spark.
    """
    t0 = time.perf_counter()
    out = Path(out)
    patients_per_part = (
        DEFAULT_PATIENTS_PER_PART if patients_per_part is None else patients_per_part
    )
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    fmt = _check_options(out, explain, regimens, engine, patients_per_part, jobs)
    source = StudySource(data_dir)
    n_chunks = -(-source.n_patients // patients_per_part)
    workers = 0 if engine == "spark" or jobs == 1 or n_chunks == 1 else min(jobs, n_chunks)
    pool = spark = planner = planned = None
    grouped, not_grouped = True, None
    try:
        if workers:  # started first: the workers import while the model loads
            pool = ProcessPoolExecutor(workers, mp_context=_worker_context())
            for _ in range(workers):
                pool.submit(_warm_up)
        chunks = source.grouped_chunks(patients_per_part)
        if workers and source.parquet_only:  # the plan is row ranges: made while the model loads
            planner = ThreadPoolExecutor(1)
            planned = planner.submit(list, chunks)
        model = load_model(model_uri)
        features = list(model.spec["feature_columns"])
        if regimens == "all" and not set(REGIMEN_FEATURES) & set(features):
            raise ConfigError("--regimens all: this model does not use the dosing regimen")
        timings: dict[str, float] = {"load_model_s": round(time.perf_counter() - t0, 3)}
        source.derive_h5ad_cells(config_from_dict(model.spec["config"]).singlecell)
        scorer = _Scorer(model.spec["kind"], features, model.model_file, model.spec,
                         {k: str(v) for k, v in source.paths.items()}, source.h5ad_cells is not None,
                         explain, regimens == "all",
                         {"model_name": model.name, "model_version": model.version, "model_uri": model.uri},
                         fmt)  # fmt: skip
        spark = _spark_session() if engine == "spark" else None
        parent = out.parent if out.parent.exists() else None
        with tempfile.TemporaryDirectory(prefix="msc-score-", dir=parent) as tmp, \
                atomic_path(out) as tmp_out:  # fmt: skip
            try:
                writer = ChunkWriter(tmp_out, fmt)
                if planned is not None:
                    chunks = planned.result()
                tally = _run_chunks(chunks, scorer, writer, pool, workers, spark)
            except NotGrouped as why:
                grouped, not_grouped = False, str(why)
                writer = ChunkWriter(tmp_out, fmt)  # starts the file again
                chunks = source.partitioned_chunks(patients_per_part, Path(tmp))
                tally = _run_chunks(chunks, scorer, writer, pool, workers, spark)
            writer.close(empty_columns=OUTPUT_COLUMNS)
            problems = (
                pd.concat(tally.problems, ignore_index=True) if tally.problems else empty_problems()
            )
            if strict and len(problems):
                bad_rows_policy.apply(problems, "error", 0)
            missing = _missing_inputs(features, tally.tests, tally.has_cells, source.files)
            if missing:
                raise DataError(missing)
            rejected = (pd.concat(tally.rejected, ignore_index=True) if tally.rejected
                        else pd.DataFrame(columns=EXCLUSION_COLUMNS))  # fmt: skip
            tally.counts["rejected"] = len(rejected)
            flow = patient_flow(tally.counts["patients_in_input"], rejected, None,
                                problems if len(problems) else None)  # fmt: skip
            write_table(rejected, sidecar(out, ".rejected.csv"))
            if len(problems):
                write_problems(problems, sidecar(out, ".problems.csv"))
    finally:
        if planner is not None:
            planner.shutdown()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if spark is not None:
            spark.stop()
    timings.update({k: round(v, 3) for k, v in sorted(tally.seconds.items())})
    total = timings["total_s"] = round(time.perf_counter() - t0, 3)
    counts = tally.counts
    summary = {
        "model_uri": model.uri, "registered_model": model.name, "version": model.version,
        "model_trained_on_simulated_data": bool(model.spec.get("trained_on_simulated_data")),
        "data_simulated": is_simulated(data_dir),
        "input_sha256": source.sha256, "output": out.name, "rejected_file": sidecar(out, ".rejected.csv").name,
        "counts": counts, "rejected_by_reason": flow["excluded"],
        "rows_with_problems": flow.get("rows_with_problems", {}),
        "rows_with_problems_outside_windows": flow.get("rows_with_problems_outside_windows", 0),
        "problems_file": sidecar(out, ".problems.csv").name if len(problems) else None,
        "strict": strict, "engine": engine, "explain": explain,
        "regimens": regimens, "threshold": float(model.spec["threshold"]),
        "workers": workers or 1, "input_grouped_by_patient": grouped,
        "partitioned_because": not_grouped,
        "timings": timings,
        "patients_per_second": round(counts["patients_in_input"] / total, 1) if total else None,
    }  # fmt: skip
    if regimens == "all":
        summary["note"] = ASSOCIATION_NOTE
    write_json(summary, sidecar(out, ".summary.json"))
    if log_to_mlflow:
        _log_scoring_run(model, summary)
    return summary


def _check_options(out: Path, explain, regimens, engine, patients_per_part, jobs) -> str:
    """Validate the options before any work; returns the output format."""
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
    if patients_per_part < 1:
        raise ConfigError(f"--patients-per-chunk: expected >= 1, got {patients_per_part!r}")
    if jobs < 1:
        raise ConfigError(f"--jobs: expected >= 1, got {jobs!r}")
    return fmt


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


def _spark_scored(scorer: _Scorer, result: _ChunkResult, spark) -> pd.DataFrame:
    """The chunk's output rows with probabilities from Spark (explanations computed here)."""
    X, uri = result.X, scorer.constants["model_uri"]
    scored = _scored_frame(result.ids, _spark_predict(uri, X, spark), scorer)
    if scorer.regimens:
        _add_regimens(scored, X, lambda Xr: _spark_predict(uri, Xr, spark))
    if scorer.explain:
        contrib, _ = scorer.fitted().contributions(X)
        scored = _with_explanations(scored, X, contrib, scorer.explain)
    return scored


def _spark_predict(uri: str, X: pd.DataFrame, spark) -> np.ndarray:
    """Probabilities through ``mlflow.pyfunc.spark_udf`` on the same feature matrix."""
    import mlflow
    from pyspark.sql import functions as F

    cols = list(X.columns)
    frame = X.assign(_order=np.arange(len(X)))
    sdf = spark.createDataFrame(frame)
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    scored = sdf.withColumn("probability", udf(F.struct(*[F.col(c) for c in cols])))
    result = scored.select("_order", "probability").toPandas().sort_values("_order")
    return result["probability"].to_numpy(dtype=float)
