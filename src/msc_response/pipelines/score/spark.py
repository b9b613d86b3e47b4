"""The Spark engine of the scoring job: the executors read, validate, featurise and score.

What runs where
---------------
* **Driver** (this process, no data rows): finds the study's tables through Hadoop's
  FileSystem (local paths, ``hdfs://``, ``s3a://``: :mod:`.spark_io`), checks their
  headers and column types with the local reader's own rules, counts patients from the
  Parquet footers (or the CSV's splits), loads the model from the registry and
  broadcasts its file and spec.
* **Executors**: Spark reads the three tables (CSV: every declared column as text), each
  row with its 1-based row of the file. Map side (``mapInArrow``, each table in its own
  columns): every Arrow batch is cut by a hash of ``patient_id`` (stripped of surrounding
  whitespace, so a padded id meets its patient, as in the local reader) into LZ4 Arrow IPC
  blobs, one per partition; the shuffle moves the blobs. Reduce side: each partition is
  one chunk in a Python worker (``mapInArrow``): its rows, in file order, go through the
  local engine's own per-chunk work, :func:`~msc_response.pipelines.score.chunk.score_chunk`
  (``study_from_chunk``, ``features_from_study``, ``predict_features`` with explanations
  and what-if regimens). The model file is written and loaded once per Python worker. A
  partition returns its predictions, rejected patients, row problems, structural problems
  and facts (patients, tests reported, seconds spent), each row tagged with its kind.
* **Driver again**: the tagged result is persisted; Spark aggregations give the counts,
  the problems that stop the job (structural; any row problem with ``strict``; inputs the
  model needs that the study never reports) and the timings. Then Spark writes the
  outputs into a temporary directory beside ``--out`` and they are renamed into place.

Outputs: ``--out`` naming a ``.parquet`` or ``.csv`` file gives one file (written by
one task); any other name is a Parquet dataset directory, with the rejected patients and
the row problems as directories of CSV parts (``NAME.rejected.csv/``,
``NAME.problems.csv/``). Output rows are grouped by partition (a hash of the patient
id), in the patients file's order within one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...config import config_from_dict
from ...errors import DataError
from ...features import flow_of_counts, sidecar
from ...io import encode_chunk, write_json
from ...modeling.fitted import LoadedModel
from ...modeling.predict import check_regimens, missing_inputs, predict_features
from ...registry.load import load_model
from ...study import StudyChunk
from ...study.problems import SHOWN_PER_RULE, as_problems
from . import spark_io as sio
from .chunk import JobRun, Task, score_chunk, with_model_columns

# Kinds of the rows a partition returns (column ``_kind``)
SCORED, REJECTED, PROBLEM, STRUCTURAL, FACTS = range(5)

#: The row problems' columns in the ``.problems.csv`` output (as the local engine writes them).
PROBLEM_OUTPUT = ["file", "row", "column", "patient_id", "rule", "message", "in_window"]


def spark_session():
    """``(session, created)``: the active Spark session, or a new one.

    The master is ``MSC_RESPONSE_SPARK_MASTER``, else ``spark-submit``'s ``--master``
    when the job runs under ``spark-submit``, else ``local[2]``. A new session (no UI) runs
    this Python in its workers unless ``PYSPARK_PYTHON`` says otherwise (a packed
    environment on a cluster), and forks its Python workers from
    :mod:`~msc_response.pipelines.score.spark_daemon`; on a ``local*`` master the executors
    import this very ``msc_response`` (those of ``local-cluster`` start in directories
    of their own). An active session (a notebook's, a test's) is used as it is and left
    running.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder
    master = os.environ.get("MSC_RESPONSE_SPARK_MASTER")
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
        master = "local[2]"
    if master is not None:
        builder = builder.master(master)
    builder = (
        builder.appName("msc-response-score")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.daemon.module", "msc_response.pipelines.score.spark_daemon")
    )
    if master is not None and master.startswith("local"):
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        builder = builder.config("spark.executorEnv.PYTHONPATH", path)
    return builder.getOrCreate(), True


# ----------------------------------------------------------------------------------------
# executors


@dataclass(frozen=True)
class _Plan:
    """What every partition needs: plain data shipped with each task (the model by broadcast)."""

    model: object  # Broadcast of {"uri", "name", "version", "spec", "file_name", "bytes", "sha256"}
    tables: dict  # table -> (display name, is a part directory)
    schemas: dict  # table -> Arrow schema of its rows (``_row`` and the declared columns)
    cells_derived: bool
    explain: int
    regimens: bool
    out_schema: pa.Schema


#: The scoring task of this Python worker (its model loaded once), by model and options.
_WORKER_TASK: dict = {}


def _worker_task(plan: _Plan):
    """The local engine's ``Task`` for this worker: the model file written and loaded once."""
    from pyspark import SparkFiles

    payload = plan.model.value
    key = (payload["sha256"], plan.explain, plan.regimens, tuple(sorted(plan.tables.items())))
    task = _WORKER_TASK.get(key)
    if task is not None:
        return task
    root = Path(SparkFiles.getRootDirectory()) / "msc-response"  # removed with the application
    model_file = root / "models" / payload["sha256"] / payload["file_name"]
    if not model_file.exists():  # two workers may write it at once: each to its own name
        model_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = model_file.with_name(f".{model_file.name}.{os.getpid()}")
        tmp.write_bytes(payload["bytes"])
        os.replace(tmp, model_file)
    model = LoadedModel(payload["uri"], payload["name"], payload["version"], payload["spec"],
                        str(model_file))  # fmt: skip
    _ = model.fitted  # loaded here, once
    # messages name each table as the driver found it: a part directory gets its slash
    # from a local stand-in (the executor may not see the study's own filesystem)
    stand_ins = {}
    for table, (display, is_dir) in plan.tables.items():
        stand_ins[table] = str(root / "tables" / display.rstrip("/"))
        if is_dir:
            Path(stand_ins[table]).mkdir(parents=True, exist_ok=True)
    task = Task(model, stand_ins, plan.cells_derived, plan.explain, plan.regimens, "parquet")
    _WORKER_TASK.clear()
    _WORKER_TASK[key] = task
    return task


def _buckets(ids: pa.Array, n_parts: int) -> np.ndarray:
    """The partition of each row: a stable hash of its ``patient_id`` stripped as
    ``str.strip`` strips it (a padded id meets its patient, as in the local reader).

    Hashed once per distinct id; a missing id goes with ``""``.
    """
    encoded = pc.dictionary_encode(ids.cast(pa.string()))
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    stripped = np.array([s.strip() for s in distinct] + [""], dtype=object)
    bucket = (pd.util.hash_array(stripped) % np.uint64(n_parts)).astype(np.int64)
    codes = pc.fill_null(encoded.indices, len(distinct)).to_numpy()
    return bucket[codes]


#: LZ4 inside the blobs: the shuffle, Spark's copies and the socket to the Python workers
#: then carry about a quarter of the bytes (measured: a third less JVM time).
_BLOB_COMPRESSION = "lz4"


def _bucketize(batches, table: int, n_parts: int, keys: list[int]):
    """Map side: a table's rows cut by partition into Arrow IPC blobs keyed for the shuffle.

    Spark then moves a few large binary rows instead of every lab row, and converts only
    the table's own columns to Arrow (a union of the tables would carry every table's
    columns on every row: Spark's conversion pays for every cell).
    """
    options = pa.ipc.IpcWriteOptions(compression=_BLOB_COMPRESSION)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        bucket = _buckets(batch.column("patient_id"), n_parts)
        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=n_parts)
        batch = batch.take(pa.array(order))
        ends = np.cumsum(counts)
        used = np.flatnonzero(counts)
        sink, offsets = pa.BufferOutputStream(), [0]  # the blobs, back to back
        for p in used:
            with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
                writer.write_batch(batch.slice(ends[p] - counts[p], counts[p]))
            offsets.append(sink.tell())
        blobs = pa.BinaryArray.from_buffers(
            pa.binary(),
            len(used),
            [None, pa.py_buffer(np.array(offsets, dtype=np.int32)), sink.getvalue()],
        )
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.asarray(keys)[used], pa.int64()),
                pa.array(np.full(len(used), table, np.int8)),
                blobs,
            ],
            names=["_key", "_table", "_rows"],
        )


def _chunk_of(batches, schemas: dict) -> StudyChunk:
    """Reduce side: the partition's rows of each table, in file order, with ``_row`` (the
    local reader's shape)."""
    found: dict[str, list] = {t: [] for t in schemas}
    for batch in batches:
        tables = batch.column("_table").to_numpy()
        for code, blob in zip(tables, batch.column("_rows"), strict=True):
            found[sio.TABLE_ORDER[code]].extend(pa.ipc.open_stream(blob.as_buffer()))
    out = {}
    for table, schema in schemas.items():
        t = pa.Table.from_batches(found[table], schema=schema)
        rows = t.column("_row").to_numpy()
        if len(rows) > 1 and (np.diff(rows) < 0).any():
            t = t.take(pa.array(np.argsort(rows, kind="stable")))
        out[table] = t
    return StudyChunk(out["patients"], out["labs"], out.get("cells"))


def _tagged(kind: int, values: pa.StructArray | None, field: str | None, n: int, schema: pa.Schema):
    columns = []
    for f in schema:
        if f.name == "_kind":
            columns.append(pa.array(np.full(n, kind, dtype=np.int8)))
        elif f.name == field:
            columns.append(values.cast(f.type))
        else:
            columns.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _struct(df_or_table, struct_type: pa.StructType) -> pa.StructArray:
    fields = list(struct_type)
    if isinstance(df_or_table, pd.DataFrame):
        table = pa.Table.from_pandas(df_or_table[[f.name for f in fields]], preserve_index=False)
    else:
        table = df_or_table.select([f.name for f in fields])
    arrays = [table.column(f.name).cast(f.type).combine_chunks() for f in fields]
    return pa.StructArray.from_arrays(arrays, fields=fields)


def _score_partition(batches, plan: _Plan):
    """One partition, scored as the local engine scores a chunk (runs in a Python worker)."""
    started, t = time.time(), time.perf_counter()
    chunk = _chunk_of(batches, plan.schemas)
    schema = plan.out_schema
    if not any(
        part is not None and part.num_rows for part in (chunk.patients, chunk.labs, chunk.cells)
    ):
        return
    seconds = {"receive_s": time.perf_counter() - t}
    task = _worker_task(plan)
    try:
        result = score_chunk(task, chunk)
    except DataError as err:
        found = pd.DataFrame({"file": [p.file for p in err.problems], "row": [p.row for p in err.problems],
                              "column": [p.column for p in err.problems], "patient_id": None,
                              "rule": "structural", "message": [p.message for p in err.problems],
                              "in_window": True})  # fmt: skip
        found["row"] = found["row"].astype("Int64")
        struct_type = schema.field("problem").type
        yield _tagged(STRUCTURAL, _struct(found, struct_type), "problem", len(found), schema)
        return
    t = time.perf_counter()
    out = []
    if result.encoded is not None:
        struct_type = schema.field("scored").type
        out.append(_tagged(SCORED, _struct(result.encoded, struct_type), "scored",
                           result.encoded.num_rows, schema))  # fmt: skip
    if len(result.rejected):
        struct_type = schema.field("rejected").type
        out.append(_tagged(REJECTED, _struct(result.rejected, struct_type), "rejected",
                           len(result.rejected), schema))  # fmt: skip
    if len(result.problems):
        struct_type = schema.field("problem").type
        out.append(_tagged(PROBLEM, _struct(result.problems, struct_type), "problem",
                           len(result.problems), schema))  # fmt: skip
    seconds.update(result.seconds)
    seconds["pack_s"] = time.perf_counter() - t
    facts_type = schema.field("facts").type
    facts = pa.StructArray.from_arrays(
        [pa.array([result.n_patients], pa.int64()), pa.array([sorted(result.tests)], pa.list_(pa.string())),
         pa.array([result.has_cells], pa.bool_()), pa.array([started], pa.float64()),
         pa.array([list(seconds.items())], pa.map_(pa.string(), pa.float64()))],
        fields=list(facts_type),
    )  # fmt: skip
    out.append(_tagged(FACTS, facts, "facts", 1, schema))
    yield from out


# ----------------------------------------------------------------------------------------
# driver


def _output_schema(model: LoadedModel, explain: int, regimens: bool) -> pa.Schema:
    """The tagged rows a partition returns; the predictions' columns from a one-row dry run."""
    X = pd.DataFrame(
        np.full((1, len(model.feature_columns)), np.nan), columns=model.feature_columns
    )
    table = predict_features(model.fitted, X, np.array(["-"], dtype=object), model.threshold,
                             explain=explain, regimens=regimens)  # fmt: skip
    encoded = encode_chunk(with_model_columns(table, model), "parquet")
    scored = [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
              for f in encoded.schema]  # fmt: skip
    text = pa.string()
    return pa.schema([
        pa.field("_kind", pa.int8()),
        pa.field("scored", pa.struct(scored)),
        pa.field("rejected", pa.struct([("patient_id", text), ("reason", text), ("category", text)])),
        pa.field("problem", pa.struct([("file", text), ("row", pa.int64()), ("column", text),
                                       ("patient_id", text), ("rule", text), ("message", text),
                                       ("in_window", pa.bool_())])),
        pa.field("facts", pa.struct([("n_patients", pa.int64()), ("tests", pa.list_(text)),
                                     ("has_cells", pa.bool_()), ("started", pa.float64()),
                                     ("seconds", pa.map_(text, pa.float64()))])),
    ])  # fmt: skip


def _model_payload(model: LoadedModel) -> dict:
    data = Path(model.model_file).read_bytes()
    return {"uri": model.uri, "name": model.name, "version": model.version, "spec": model.spec,
            "file_name": Path(model.model_file).name, "bytes": data,
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def _problem_order(study):
    """Problems in the local engine's order: patients, labs, cells, then row."""
    from pyspark.sql import functions as F

    order = F.lit(len(sio.TABLE_ORDER))
    for code, table in reversed(list(enumerate(sio.TABLE_ORDER))):
        if table in study.tables:
            order = F.when(F.col("file") == study.tables[table].display, code).otherwise(order)
    return [order, F.col("row")]


def _tally(scored) -> list:
    """``(kind, label, in_window, count)`` rows: one Spark aggregation over the result.

    The label is the category of a rejected patient and the rule of a row problem.
    """
    from pyspark.sql import functions as F

    kind = F.col("_kind")
    label = F.when(kind == REJECTED, F.col("rejected.category")).when(
        kind.isin(PROBLEM, STRUCTURAL), F.col("problem.rule")
    )
    in_window = F.when(kind == PROBLEM, F.col("problem.in_window"))
    return (
        scored.groupBy(kind, label.alias("label"), in_window.alias("in_window")).count().collect()
    )


def _stop_on_problems(scored, study, strict: bool, tally, hadoop, target: sio.Target) -> None:
    """Raise what stops the job: structural problems, and any row problem with ``strict``.

    With ``strict`` and more problems than a message shows, the full list is written as
    ``.problems.csv`` (the only output), as the command line does for the local engine.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    structural = sum(r["count"] for r in tally if r["_kind"] == STRUCTURAL)
    if structural:
        found = scored.where(F.col("_kind") == STRUCTURAL).select("problem.*")
        shown = found.orderBy(*_problem_order(study)).limit(1000).toPandas()
        raise DataError(as_problems(shown), hidden=structural - len(shown))
    n = sum(r["count"] for r in tally if r["_kind"] == PROBLEM and r["in_window"])
    if not strict or not n:
        return
    matters = scored.where((F.col("_kind") == PROBLEM) & F.col("problem.in_window"))
    matters = matters.select("problem.*")
    first = Window.partitionBy("rule").orderBy(*_problem_order(study))
    shown = (matters.withColumn("_n", F.row_number().over(first)).where(F.col("_n") <= SHOWN_PER_RULE)
             .orderBy(*_problem_order(study)).toPandas())  # fmt: skip
    err = DataError(as_problems(shown), hidden=n - len(shown))
    if err.hidden:
        name = sidecar(Path(target.name), ".problems.csv").name
        with target.staging(hadoop) as stage:
            stage.write(matters.select(PROBLEM_OUTPUT).orderBy(*_problem_order(study)), "csv",
                        target.sibling(".problems.csv"), single=target.single_file)  # fmt: skip
        err.args = (f"{err.args[0]}\nevery problem ({n}) is listed in {name}",)
    raise err


def run_spark_job(model_uri: str, data_dir, out, options):
    """Score through Spark; see :func:`msc_response.pipelines.score.job.score`.

    ``data_dir`` and ``out`` may be any URI Hadoop's FileSystem reads (``hdfs://``,
    ``s3a://``, ``file:``) or local paths.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as loader:  # the registry is read while the JVM starts
        loading = loader.submit(_timed, load_model, model_uri)
        spark, created = spark_session()
    timings = {"start_spark_s": time.perf_counter() - t0}
    hadoop = sio.Hadoop(spark)
    broadcast = scored = None
    stop = created  # a session this job started stops with it (after a remote summary)
    try:
        model, timings["load_model_s"] = loading.result()
        if options.regimens:
            check_regimens(model)
        t = time.perf_counter()
        target = sio.Target(str(out), options.fmt)
        target.check(hadoop)
        study = sio.read_study(spark, hadoop, str(data_dir),
                               config_from_dict(model.spec["config"]).singlecell)  # fmt: skip
        out_schema = _output_schema(model, options.explain, options.regimens)
        spark_schema = from_arrow_schema(out_schema)
        broadcast = spark.sparkContext.broadcast(_model_payload(model))
        plan = _Plan(broadcast, {k: (v.display, v.is_dir) for k, v in study.tables.items()},
                     {k: to_arrow_schema(v.frame.schema) for k, v in study.tables.items()},
                     study.cells_derived, options.explain, options.regimens,
                     to_arrow_schema(spark_schema))  # fmt: skip
        n_parts = max(spark.sparkContext.defaultParallelism,
                      math.ceil(study.n_patients / options.patients_per_chunk))  # fmt: skip
        keys = _partition_keys(spark, n_parts)
        cut = None
        for code, table in enumerate(sio.TABLE_ORDER):
            if table in study.tables:
                part = study.tables[table].frame.mapInArrow(
                    functools.partial(_bucketize, table=code, n_parts=n_parts, keys=keys),
                    "_key long, _table byte, _rows binary",
                )
                cut = part if cut is None else cut.union(part)
        scored = (
            cut.repartition(n_parts, "_key")
            .mapInArrow(functools.partial(_score_partition, plan=plan), spark_schema)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        timings["plan_s"] = time.perf_counter() - t

        t, started = time.perf_counter(), time.time()
        tally = _tally(scored)  # the first action: runs the whole job
        _stop_on_problems(scored, study, options.strict, tally, hadoop, target)
        facts = scored.where(F.col("_kind") == FACTS).select("facts.*")
        total = facts.agg(
            F.sum("n_patients").alias("n"),
            F.max("has_cells").alias("has_cells"),
            F.array_sort(F.array_distinct(F.flatten(F.collect_list("tests")))).alias("tests"),
            F.min("started").alias("first_partition"),
        ).first()
        if total["first_partition"] is not None:  # reading and shuffling end when partitions start
            timings["read_shuffle_s"] = max(0.0, total["first_partition"] - started)
        seconds = dict(
            facts.select(F.explode("seconds")).groupBy("key").agg(F.sum("value")).collect()
        )
        missing = missing_inputs(model.feature_spec, set(total["tests"] or []),
                                 bool(total["has_cells"]), study.tables["labs"].display)  # fmt: skip
        if missing:
            raise DataError(missing)
        timings["score_s"] = time.perf_counter() - t

        t = time.perf_counter()
        counts = {"patients_in_input": int(total["n"] or 0),
                  "scored": sum(r["count"] for r in tally if r["_kind"] == SCORED),
                  "rejected": sum(r["count"] for r in tally if r["_kind"] == REJECTED)}  # fmt: skip
        flow = _flow(counts, tally)
        has_problems = any(r["_kind"] == PROBLEM for r in tally)
        with target.staging(hadoop) as stage:
            kind = F.col("_kind")
            stage.write(scored.where(kind == SCORED).select("scored.*"), options.fmt
                        if target.single_file else "parquet", target.uri, single=target.single_file)  # fmt: skip
            stage.write(scored.where(kind == REJECTED).select("rejected.*"), "csv",
                        target.sibling(".rejected.csv"), single=target.single_file)  # fmt: skip
            if has_problems:
                problems = scored.where(kind == PROBLEM).select("problem.*")
                stage.write(problems.select(PROBLEM_OUTPUT), "csv", target.sibling(".problems.csv"),
                            single=target.single_file)  # fmt: skip
        timings["write_s"] = time.perf_counter() - t
        summary_uri = target.sibling(".summary.json")
        if target.local:  # written by the job (``out`` may be a file: URI)
            write_summary = functools.partial(_write_local_json, sio.local_path(summary_uri))
        else:  # on the output's filesystem, through this session
            write_summary = functools.partial(_write_remote_json, hadoop, summary_uri,
                                              spark if created else None)  # fmt: skip
            stop = False
    finally:
        if scored is not None:
            scored.unpersist()
        if broadcast is not None:
            broadcast.destroy()
        if stop:
            spark.stop()
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings.update({k: round(v, 3) for k, v in sorted(seconds.items())})  # summed over partitions
    details = {
        "spark_master": study.master,
        "partitions": n_parts,
        "output_layout": "file" if target.single_file else "dataset",
        "row_numbers": study.row_numbers,
    }
    return JobRun(model, counts, flow, has_problems, study.sha256, timings, details,
                      data_simulated=study.simulated, write_summary=write_summary)  # fmt: skip


def _partition_keys(spark, n_parts: int) -> list[int]:
    """For each partition ``p``, a key that Spark's hash partitioning sends to ``p`` (one
    bucket of patients per partition: none empty, none doubled)."""
    from pyspark.sql import functions as F

    keys: dict[int, int] = {}
    limit = 64 * n_parts
    while len(keys) < n_parts:
        found = spark.range(limit).select("id", F.expr(f"pmod(hash(id), {n_parts})").alias("p"))
        for k, p in sorted(found.collect()):
            keys.setdefault(p, k)
        limit *= 8
    return [keys[p] for p in range(n_parts)]


def _timed(func, *args):
    t = time.perf_counter()
    return func(*args), time.perf_counter() - t


def _flow(counts: dict, tally) -> dict:
    """The patient flow of :func:`~msc_response.features.patient_flow`, from Spark's counts."""
    excluded, rules, outside = {}, {}, 0
    for row in tally:
        if row["_kind"] == REJECTED:
            excluded[row["label"]] = excluded.get(row["label"], 0) + row["count"]
        elif row["_kind"] == PROBLEM:
            rules[row["label"]] = rules.get(row["label"], 0) + row["count"]
            outside += 0 if row["in_window"] else row["count"]
    return flow_of_counts(counts["patients_in_input"], excluded, counts["rejected"], rules, outside)


def _write_local_json(path: Path, summary: dict) -> None:
    write_json(summary, path)


def _write_remote_json(hadoop, uri: str, spark, summary: dict) -> None:
    """The run summary on the output's filesystem; then the job's own session stops."""
    import json

    try:
        hadoop.write_text_atomic(
            uri, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
        )
    finally:
        if spark is not None:
            spark.stop()
