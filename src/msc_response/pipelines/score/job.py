"""The batch scoring job: every patient of a study directory scored, explained and accounted for.

The study is read in chunks of patients (:mod:`msc_response.study.reader`): in one pass
when its rows are grouped by patient in the patients file's order, through hash
partitions on disk otherwise. Chunks are validated, featurised, predicted and explained
(:func:`~msc_response.modeling.predict.predict_features`) in ``jobs`` worker processes
(each LightGBM call on one thread, so the workers use the cores) and written in chunk
order, so output rows follow the patients file (or the partitions) and are identical for
identical input whatever the number of workers. Outputs are written to temporary files
and moved into place only when every patient has been scored or rejected: a killed job
leaves the previous output or none. Every temporary file of the job (the output being
written, the hash partitions of patient rows) lives in the output's work directory
(:func:`msc_response.io.atomic_path`), removed when the job ends, however it ends; the
workers exit when the job's process does, even when it is killed with SIGKILL
(:func:`msc_response.processes.exit_with`).
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ... import processes, progress, tracking
from ...errors import ConfigError, DataError
from ...features import EXCLUSION_COLUMNS, patient_flow, write_problems
from ...io import (
    PROBLEMS,
    REJECTED,
    SUMMARY,
    ChunkWriter,
    atomic_path,
    check_outputs,
    names_a_folder,
    sidecar,
    table_format,
    write_json,
    write_table,
)
from ...modeling.fitted import LoadedModel
from ...modeling.predict import ASSOCIATION_NOTE, check_regimens, missing_inputs
from ...registry.load import load_model
from ...study import NotGrouped, StudySource, is_simulated
from ...study import policy as bad_rows_policy
from ...study.files import input_paths
from ...study.problems import empty_problems
from ..benefit import read_benefit_model
from .chunk import ChunkResult, JobRun, Task, score_chunk
from .spark import run_spark_job

DEFAULT_PATIENTS_PER_CHUNK = 50_000
OUTPUT_COLUMNS = [
    "patient_id",
    "model_name",
    "model_version",
    "model_uri",
    "model_status",
    "model_trained_on_simulated_data",
    "probability",
    "predicted_response",
]
ENGINES = ("local", "spark")
#: What the job writes beside ``out`` (see :func:`~msc_response.io.sidecar`).
SIDECARS = (REJECTED, PROBLEMS, SUMMARY)


def _worker_context():
    """Workers forked from a fresh server that imported the scoring code once.

    Not plain ``fork``: this process has started threads (pyarrow, SQLAlchemy) by then.
    Not ``spawn``: each worker would import pandas, pyarrow, LightGBM and scikit-learn
    again (about 4 s of CPU each on this machine).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["msc_response.pipelines.score.chunk", "lightgbm"])
    return ctx


def _warm_up() -> None:
    """Make the pool start its workers while this process loads the model."""


@dataclass
class _Tally:
    counts: dict = field(
        default_factory=lambda: {"patients_in_input": 0, "scored": 0, "rejected": 0}
    )
    tests: set = field(default_factory=set)
    has_cells: bool = False
    predicted_responders: int = 0
    rejected: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    seconds: collections.Counter = field(default_factory=collections.Counter)


def _run_chunks(chunks, task: Task, writer: ChunkWriter, pool, workers: int,
                n_chunks: int | None = None) -> _Tally:  # fmt: skip
    """Score every chunk (in the pool when there is one) and write results in chunk order."""
    with progress.task(f"scoring chunks ({workers or 1} worker(s))", n_chunks) as advance:
        return _run_chunks_reported(chunks, task, writer, pool, workers, advance)


def _run_chunks_reported(chunks, task: Task, writer: ChunkWriter, pool, workers: int,
                         advance) -> _Tally:  # fmt: skip
    tally = _Tally()
    pending: collections.deque = collections.deque()
    limit = 2 * workers  # chunks in flight: bounded memory

    def finish(result: ChunkResult) -> None:
        tally.counts["patients_in_input"] += result.n_patients
        tally.tests |= result.tests
        tally.has_cells |= result.has_cells
        tally.rejected.append(result.rejected)
        if len(result.problems):
            tally.problems.append(result.problems)
        tally.seconds.update(result.seconds)
        advance()
        if result.encoded is None:
            return
        t = time.perf_counter()
        writer.write_encoded(result.encoded)
        tally.seconds["write_s"] += time.perf_counter() - t
        tally.counts["scored"] += result.n_scored
        tally.predicted_responders += result.n_predicted_responders

    try:
        for chunk in chunks:
            if pool is None:
                finish(score_chunk(task, chunk))
                continue
            pending.append(pool.submit(score_chunk, task, chunk))
            while len(pending) >= limit or (pending and pending[0].done()):
                finish(pending.popleft().result())
        while pending:
            finish(pending.popleft().result())
    finally:
        for f in pending:
            f.cancel()
    return tally


def _planned_ahead(chunks, planner: ThreadPoolExecutor, stop: threading.Event):
    """The chunks as a thread plans them: scoring starts with the first chunk planned, not
    once every chunk is (the plan reads every table's ids: seconds per million patients).
    What the planning raises (:class:`NotGrouped` at the end) is raised here, in turn."""
    planned: queue.Queue = queue.Queue()
    end = object()

    def plan() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():  # the job failed or ended: no more planning
                    return
                planned.put(chunk)
            planned.put(end)
        except BaseException as err:  # handed to the consumer, raised there
            planned.put(err)

    planner.submit(plan)
    while (item := planned.get()) is not end:
        if isinstance(item, BaseException):
            raise item
        yield item


def check_options(out: Path, *, explain, regimens, engine, patients_per_chunk, jobs) -> str:
    """Validate the options before any work; returns the output format.

    ``"dataset"``: the Spark engine writes a Parquet dataset directory (``out`` without
    a ``.csv``/``.parquet`` suffix, and none of another file type: ``preds``, ``preds.v2``).
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
    try:
        fmt = table_format(out)
    except ValueError as err:
        if engine == "spark" and names_a_folder(out):
            fmt = "dataset"
        else:
            hint = " (or, with --engine spark, a directory)" if names_a_folder(out) else ""
            raise ConfigError(f"out: {err}{hint}") from None
    if regimens not in (None, "all"):
        raise ConfigError(f"regimens: expected 'all', got {regimens!r}")
    if explain < 0:
        raise ConfigError(f"explain: expected a number >= 0, got {explain!r}")
    if patients_per_chunk < 1:
        raise ConfigError(f"patients_per_chunk: expected >= 1, got {patients_per_chunk!r}")
    if jobs < 1:
        raise ConfigError(f"jobs: expected >= 1, got {jobs!r}")
    return fmt


def check_out(out: Path, data_dir) -> None:
    """``out`` and its sidecars may be written without destroying the study (see :func:`check_outputs`)."""
    check_outputs([out, *(sidecar(out, s) for s in SIDECARS)], inputs=input_paths(data_dir))


@dataclass(frozen=True)
class JobOptions:
    """The scoring options, validated (see :func:`check_options`)."""

    explain: int
    regimens: bool
    patients_per_chunk: int
    jobs: int
    strict: bool
    fmt: str
    benefit: dict | None = None  # an exported benefit model (``--benefit-model``)


def score(
    model_uri: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    explain: int = 0,
    regimens: str | None = None,
    engine: str = "local",
    patients_per_chunk: int | None = None,
    jobs: int | None = None,
    strict: bool = False,
    log_to_mlflow: bool = True,
    benefit_model: str | Path | None = None,
) -> dict:
    """Score every patient of ``data_dir``; returns the run summary (also written beside ``out``).

    A patient with a bad row (in a window the model's config reads) is rejected with the
    problem as the reason and everyone else is scored; every row problem is listed in
    ``FILE.problems.csv``. With ``strict``, any such problem is an error instead
    (:class:`DataError` with every problem; nothing is written).

    Parameters
    ----------
    explain : int
        Also write the ``explain`` largest contributions of each patient.
    regimens : {None, "all"}
        ``"all"``: also the probability under each trial regimen.
    engine : {"local", "spark"}
        Worker processes on this machine, or Spark.
    patients_per_chunk : int, optional
        Patients per chunk (default :data:`DEFAULT_PATIENTS_PER_CHUNK`).
    jobs : int, optional
        Worker processes (default: the machine's cores). 1 scores in this process.
    benefit_model : path, optional
        ``fit-benefit``'s JSON: also ``predicted_benefit`` with its interval (per regimen
        when the randomised study had several), on either engine.
    """
    t0 = time.perf_counter()
    target, out = out, Path(out)  # the Spark engine also writes to hdfs:// or s3a:// URIs
    patients_per_chunk = (
        DEFAULT_PATIENTS_PER_CHUNK if patients_per_chunk is None else patients_per_chunk
    )
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    fmt = check_options(out, explain=explain, regimens=regimens, engine=engine,
                        patients_per_chunk=patients_per_chunk, jobs=jobs)  # fmt: skip
    check_out(out, data_dir)
    benefit = None if benefit_model is None else read_benefit_model(benefit_model)
    options = JobOptions(explain, regimens == "all", patients_per_chunk, jobs, strict, fmt, benefit)
    if engine == "spark":
        run = run_spark_job(model_uri, data_dir, target, options)
    else:
        run = _run_local_job(model_uri, data_dir, out, options)
    total = run.timings["total_s"] = round(time.perf_counter() - t0, 3)
    model, counts, flow = run.model, run.counts, run.flow
    summary = {
        "model_uri": model.uri, "registered_model": model.name, "version": model.version,
        "model_status": model.status, "model_trained_on_simulated_data": model.trained_on_simulated_data,
        "warning": model.warning(),
        "data_simulated": is_simulated(data_dir) if run.data_simulated is None else run.data_simulated,
        "input_sha256": run.input_sha256, "output": out.name, "rejected_file": sidecar(out, REJECTED).name,
        "counts": counts, "rejected_by_reason": flow["excluded"],
        "rows_with_problems": flow.get("rows_with_problems", {}),
        "rows_with_problems_outside_windows": flow.get("rows_with_problems_outside_windows", 0),
        "rows_with_problems_in_tests_not_read": flow.get("rows_with_problems_in_tests_not_read", 0),
        "problems_file": sidecar(out, PROBLEMS).name if run.has_problems else None,
        "strict": strict, "engine": engine, "explain": explain,
        "regimens": regimens, "threshold": model.threshold,
        **run.details,
        "timings": run.timings,
        "patients_per_second": round(counts["patients_in_input"] / total, 1) if total else None,
    }  # fmt: skip
    if regimens == "all":
        summary["note"] = ASSOCIATION_NOTE
    if benefit is not None:
        summary["benefit_model"] = {
            "file": str(benefit_model),
            "sha256": benefit["file_sha256"],
            "kind": benefit["kind"],
            "regimens": [r["name"] for r in benefit.get("regimens", [])] or None,
            **benefit["provenance"],
        }
    if run.write_summary is None:
        write_json(summary, sidecar(out, SUMMARY))
    else:
        run.write_summary(summary)
    if log_to_mlflow:
        _log_scoring_run(model, summary)
    return summary


def finish_outputs(
    out: Path, model: LoadedModel, tally, strict: bool, labs_file: str
) -> tuple[dict, bool]:
    """Check the whole job's problems and inputs, then write the rejected and problem files.

    Returns the patient flow and whether any row had a problem.
    """
    problems = pd.concat(tally.problems, ignore_index=True) if tally.problems else empty_problems()
    if strict and len(problems):
        bad_rows_policy.apply(problems, "error", 0)
    missing = missing_inputs(model.feature_spec, tally.tests, tally.has_cells, labs_file)
    if missing:
        raise DataError(missing)
    rejected = (pd.concat(tally.rejected, ignore_index=True) if tally.rejected
                else pd.DataFrame(columns=EXCLUSION_COLUMNS))  # fmt: skip
    tally.counts["rejected"] = len(rejected)
    flow = patient_flow(
        tally.counts["patients_in_input"], rejected, None, problems if len(problems) else None
    )
    write_table(rejected, sidecar(out, REJECTED))
    if len(problems):
        write_problems(problems, sidecar(out, PROBLEMS))
    return flow, bool(len(problems))


def _run_local_job(model_uri: str, data_dir, out: Path, options: JobOptions) -> JobRun:
    """The local engine: chunks in worker processes on this machine.

    The output's work directory is made first, so an output that cannot be written is
    an error before any work (and holds the hash partitions when they are needed).
    """
    t0, cpu = time.perf_counter(), time.process_time()
    source = StudySource(data_dir)
    n_chunks = -(-source.n_patients // options.patients_per_chunk)
    workers = 0 if options.jobs == 1 or n_chunks == 1 else min(options.jobs, n_chunks)
    pool = planner = None
    stop_planning = threading.Event()
    grouped, not_grouped = True, None
    with atomic_path(out) as tmp_out:
        try:
            if workers:  # started first: the workers import while the model loads
                pool = ProcessPoolExecutor(workers, mp_context=_worker_context(),
                                           initializer=processes.exit_with,
                                           initargs=processes.identity())  # fmt: skip
                for _ in range(workers):
                    pool.submit(_warm_up)
            chunks = source.grouped_chunks(options.patients_per_chunk)
            if workers and source.parquet_only:  # row ranges, planned while the model loads
                planner = ThreadPoolExecutor(1)  # and the first chunks are scored
                chunks = _planned_ahead(chunks, planner, stop_planning)
            model = load_model(model_uri)
            if options.regimens:
                check_regimens(model)
            timings: dict[str, float] = {"load_model_s": round(time.perf_counter() - t0, 3)}
            source.derive_h5ad_cells(model.spec.config.singlecell)
            task = Task(model, {k: str(v) for k, v in source.paths.items()}, source.h5ad_cells is not None,
                         options.explain, options.regimens, options.fmt, options.benefit)  # fmt: skip
            try:
                writer = ChunkWriter(tmp_out, options.fmt)
                tally = _run_chunks(chunks, task, writer, pool, workers, n_chunks)
            except NotGrouped as why:
                grouped, not_grouped = False, str(why)
                # closed before the file starts again: an abandoned Parquet writer, closed
                # later by the garbage collector, wrote its footer into the new file
                writer.close()
                writer = ChunkWriter(tmp_out, options.fmt)
                partitions = (
                    tmp_out.parent / "partitions"
                )  # patient rows: gone with the work directory
                chunks = source.partitioned_chunks(options.patients_per_chunk, partitions)
                tally = _run_chunks(chunks, task, writer, pool, workers, n_chunks)
            writer.close(empty_columns=OUTPUT_COLUMNS)
            flow, has_problems = finish_outputs(
                out, model, tally, options.strict, source.files["labs"]
            )
        finally:  # before the work directory (and any partition a worker reads) goes
            if planner is not None:
                stop_planning.set()
                planner.shutdown()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    timings.update({k: round(v, 3) for k, v in sorted(tally.seconds.items())})
    # CPU of this process (planning, model, writing; its threads included): the workers' is cpu_s
    timings["main_cpu_s"] = round(time.process_time() - cpu, 3)
    details = {
        "workers": workers or 1,
        "input_grouped_by_patient": grouped,
        "partitioned_because": not_grouped,
        # at the model's threshold; counts only: the job has no labels, so no sensitivity or
        # PPV (those are in the training report and validate's page)
        "predicted_responders": tally.predicted_responders,
    }
    return JobRun(model, tally.counts, flow, has_problems, source.sha256, timings, details)


def _log_scoring_run(model: LoadedModel, summary: dict) -> None:
    """Counts and timings of the job in MLflow (experiment ``NAME-scoring``; no patient ids).

    Started with :func:`msc_response.tracking.job_run`: ended KILLED on SIGTERM, and a
    run a killed job left RUNNING is ended by the next scoring of the same model."""
    import mlflow

    experiment = f"{model.name}-scoring" if model.name else "scoring"
    with tracking.using():
        with tracking.job_run(experiment, f"score {model.name} v{model.version}"):
            processes.checkpoint("score:run")
            mlflow.set_tags({tracking.TAG_STAGE: "score", "model_uri": model.uri, "engine": summary["engine"],
                             "data.simulated": str(summary["data_simulated"]).lower()})  # fmt: skip
            mlflow.log_metrics(
                {**{f"n_{k}": v for k, v in summary["counts"].items()}, **summary["timings"]}
            )
            mlflow.log_dict(summary, "scoring_summary.json")
