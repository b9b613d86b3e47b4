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
  one chunk in a Python worker (``mapInArrow``). A study already grouped by patient
  (hash parts declared in the footers: :mod:`msc_response.study.partitioning`) skips
  the map side and the shuffle: task ``k`` reads part ``k`` of every table itself,
  checks that every row belongs there, and cuts it into chunks by the same hash.
  A chunk's rows, in file order, go through the
  local engine's own per-chunk work, :func:`~msc_response.pipelines.score.chunk.score_chunk`
  (``study_from_chunk``, ``features_from_study``, ``predict_features`` with explanations
  and what-if regimens). The model file is written and loaded once per Python worker. A
  partition returns its predictions, rejected patients, row problems, structural problems,
  facts (patients, tests reported, seconds spent) and its counts by kind and reason, each
  row tagged with its kind.
* **Driver again**: the tagged result is persisted; one small collect of the facts and
  counts (the first action) gives the patient flow and the timings, and
  the problems that stop the job (structural; any row problem with ``strict``; inputs the
  model needs that the study never reports). Then Spark writes the
  outputs into a temporary directory beside ``--out`` and they are renamed into place.

Outputs: ``--out`` naming a ``.parquet`` or ``.csv`` file gives one file (written by
one task); a name without a file extension is a Parquet dataset directory (its
sidecars keep the whole name: :func:`msc_response.io.sidecar_name`), with the rejected patients and
the row problems as directories of CSV parts (``NAME.rejected.csv/``,
``NAME.problems.csv/``). Output rows are grouped by partition (a hash of the patient
id), in the patients file's order within one.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import DataError
from ...features import flow_of_counts
from ...io import PROBLEMS, SUMMARY, encode_chunk, sidecar_name, write_json
from ...io import REJECTED as REJECTED_FILE
from ...modeling.benefit import with_predicted_benefit
from ...modeling.fitted import LoadedModel
from ...modeling.predict import check_regimens, missing_inputs, predict_features
from ...registry.load import load_model
from ...study import StudyChunk, partitioning
from ...study.problems import SHOWN_PER_RULE, as_problems
from . import spark_io as sio
from .chunk import JobRun, Task, score_chunk, with_model_columns

# Kinds of the rows a partition returns (column ``_kind``)
SCORED, REJECTED, PROBLEM, STRUCTURAL, FACTS, TALLY = range(6)

#: The row problems' columns in the ``.problems.csv`` output (as the local engine writes them).
PROBLEM_OUTPUT = ["file", "row", "column", "patient_id", "test", "rule", "message", "test_read",
                  "in_window"]  # fmt: skip


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

    model: object  # Broadcast of {"uri", "name", "version", "spec", "status", "file_name", "bytes", "sha256"}
    tables: dict  # table -> (display name, is a part directory)
    schemas: dict  # table -> Arrow schema of its rows (``_row`` and the declared columns)
    cells_derived: bool
    explain: int
    regimens: bool
    out_schema: pa.Schema
    #: an exported benefit model (``--benefit-model``): plain numbers, small, sent as is
    benefit: dict | None = None


@dataclass(frozen=True)
class _PartFiles:
    """Hash parts by patient, read by the executors themselves (no shuffle): for each
    table, the local path and first row (0-based, across the parts) of part ``k``."""

    n_parts: int
    files: dict  # table -> [(path, first_row)] by part
    columns: dict  # table -> the declared columns to read
    patients_per_chunk: int


#: The scoring task of this Python worker (its model loaded once), by model and options.
_WORKER_TASK: dict = {}


def _worker_task(plan: _Plan):
    """The local engine's ``Task`` for this worker: the model file written and loaded once."""
    from pyspark import SparkFiles

    payload = plan.model.value
    benefit = None if plan.benefit is None else plan.benefit["file_sha256"]
    key = (payload["sha256"], plan.explain, plan.regimens, tuple(sorted(plan.tables.items())),
           benefit)  # fmt: skip
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
                        str(model_file), payload["status"])  # fmt: skip
    _ = model.fitted  # loaded here, once
    # messages name each table as the driver found it: a part directory gets its slash
    # from a local stand-in (the executor may not see the study's own filesystem)
    stand_ins = {}
    for table, (display, is_dir) in plan.tables.items():
        stand_ins[table] = str(root / "tables" / display.rstrip("/"))
        if is_dir:
            Path(stand_ins[table]).mkdir(parents=True, exist_ok=True)
    task = Task(
        model, stand_ins, plan.cells_derived, plan.explain, plan.regimens, "parquet", plan.benefit
    )
    _WORKER_TASK.clear()
    _WORKER_TASK[key] = task
    return task


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
        bucket = partitioning.part_of(batch.column("patient_id"), n_parts)
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
    """One shuffled partition, scored as the local engine scores a chunk (in a Python worker)."""
    started, t = time.time(), time.perf_counter()
    chunk = _chunk_of(batches, plan.schemas)
    seconds = {"receive_s": time.perf_counter() - t}
    yield from _with_tally(_scored_chunk(chunk, plan, started, seconds), plan.out_schema)


def _with_tally(tagged, schema: pa.Schema):
    """The tagged batches (each of one kind), then :data:`TALLY` rows counting them by
    ``(kind, label, in_window, test_read)``: the driver's counts without a pass over the
    result (the label: a rejected patient's category, a problem's rule)."""
    counts: collections.Counter = collections.Counter()
    for batch in tagged:
        yield batch
        if batch.num_rows == 0:
            continue
        kind = batch.column("_kind")[0].as_py()
        if kind == SCORED:
            counts[(SCORED, None, None, None)] += batch.num_rows
        elif kind == REJECTED:
            labels = batch.column("rejected").field("category").to_pylist()
            counts.update((REJECTED, label, None, None) for label in labels)
        elif kind == STRUCTURAL:
            labels = batch.column("problem").field("rule").to_pylist()
            counts.update((STRUCTURAL, label, None, None) for label in labels)
        elif kind == PROBLEM:
            found = batch.column("problem")
            counts.update((PROBLEM, *key) for key in zip(
                found.field("rule").to_pylist(), found.field("in_window").to_pylist(),
                found.field("test_read").to_pylist(), strict=True))  # fmt: skip
    if counts:
        keys = list(counts)
        tally = pa.StructArray.from_arrays(
            [pa.array([k[0] for k in keys], pa.int8()), pa.array([k[1] for k in keys], pa.string()),
             pa.array([k[2] for k in keys], pa.bool_()), pa.array([k[3] for k in keys], pa.bool_()),
             pa.array([counts[k] for k in keys], pa.int64())],
            fields=list(schema.field("tally").type),
        )  # fmt: skip
        yield _tagged(TALLY, tally, "tally", len(keys), schema)


def _read_part(path: str, first_row: int, columns: list[str]) -> pa.Table:
    """A part file's declared columns with ``_row`` (as the local reader numbers the rows)."""
    table = pq.ParquetFile(path).read(columns=columns).replace_schema_metadata(None)
    rows = np.arange(first_row + 1, first_row + table.num_rows + 1, dtype=np.int64)
    return table.append_column("_row", pa.array(rows))


def _score_hash_parts(batches, plan: _Plan, parts: _PartFiles):
    """The parts whose numbers arrive in ``batches`` (one per task), scored and counted."""
    yield from _with_tally(_hash_parts_tagged(batches, plan, parts), plan.out_schema)


def _hash_parts_tagged(batches, plan: _Plan, parts: _PartFiles):
    """Parts ``k`` of every table, read here and scored in chunks of at most
    ``patients_per_chunk`` patients (cut by the same hash), with no shuffle.

    Every row is checked to belong to its part first: a wrong declaration is a structural
    problem naming the part file (the job stops; nothing is written).
    """
    for batch in batches:
        for k in batch.column("id").to_pylist():
            started, t = time.time(), time.perf_counter()
            tables, hashes = {}, {}
            for table, files in parts.files.items():
                path, first_row = files[k]
                tables[table] = _read_part(path, first_row, parts.columns[table])
                hashes[table] = partitioning.patient_hash(tables[table].column("patient_id"))
                wrong = np.flatnonzero(hashes[table] % np.uint64(parts.n_parts) != k)
                if len(wrong):
                    yield _misplaced(plan, table, path, tables[table], wrong, k, parts.n_parts)
                    return
            read_s = time.perf_counter() - t
            n_chunks = max(1, math.ceil(tables["patients"].num_rows / parts.patients_per_chunk))
            for c in range(n_chunks):  # the rest of the hash cuts a part into chunks
                t = time.perf_counter()
                pieces = {}
                for table, rows in tables.items():
                    within = (hashes[table] // np.uint64(parts.n_parts)) % np.uint64(n_chunks)
                    pieces[table] = rows if n_chunks == 1 else rows.filter(pa.array(within == c))
                seconds = {"receive_s": read_s + time.perf_counter() - t}
                chunk = StudyChunk(pieces["patients"], pieces["labs"], pieces.get("cells"))
                yield from _scored_chunk(chunk, plan, started, seconds)
                started, read_s = time.time(), 0.0


def _misplaced(plan: _Plan, table: str, path: str, rows: pa.Table, wrong, k: int, n: int):
    """The structural problem of a part holding another part's patients."""
    display = plan.tables[table][0]
    first = int(wrong[0])
    pid = rows.column("patient_id")[first].as_py()
    belongs = int(partitioning.part_of(pa.array([pid], pa.string()), n)[0])
    message = (f"{Path(path).name} declares hash part {k} of {n} ({partitioning.KEY} in its "
               f"footer), but holds patient_id {pid!r} of part {belongs} ({len(wrong)} such rows): "
               "the declaration is wrong; write the study again with --parts, or drop the footer "
               "key")  # fmt: skip
    found = pd.DataFrame({"file": [display], "row": [int(rows.column("_row")[first].as_py())],
                          "column": ["patient_id"], "patient_id": None, "rule": "structural",
                          "message": [message], "test": None, "test_read": True,
                          "in_window": True})  # fmt: skip
    struct_type = plan.out_schema.field("problem").type
    return _tagged(STRUCTURAL, _struct(found, struct_type), "problem", 1, plan.out_schema)


def _scored_chunk(chunk: StudyChunk, plan: _Plan, started: float, seconds: dict):
    """One chunk, scored as the local engine scores it: the tagged result rows."""
    schema = plan.out_schema
    if not any(
        part is not None and part.num_rows for part in (chunk.patients, chunk.labs, chunk.cells)
    ):
        return
    task = _worker_task(plan)
    try:
        result = score_chunk(task, chunk)
    except DataError as err:
        found = pd.DataFrame({"file": [p.file for p in err.problems], "row": [p.row for p in err.problems],
                              "column": [p.column for p in err.problems], "patient_id": None,
                              "rule": "structural", "message": [p.message for p in err.problems],
                              "test": None, "test_read": True, "in_window": True})  # fmt: skip
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


def _output_schema(
    model: LoadedModel, explain: int, regimens: bool, benefit: dict | None = None
) -> pa.Schema:
    """The tagged rows a partition returns; the predictions' columns from a one-row dry run."""
    X = pd.DataFrame(
        np.full((1, len(model.feature_columns)), np.nan), columns=model.feature_columns
    )
    table = predict_features(model.fitted, X, np.array(["-"], dtype=object), model.threshold,
                             explain=explain, regimens=regimens)  # fmt: skip
    if benefit is not None:  # the benefit columns, from a patient with every feature missing
        table = with_predicted_benefit(table, pd.DataFrame({"patient_id": ["-"]}).reindex(
            columns=["patient_id", *benefit["columns"]]), benefit)  # fmt: skip
    encoded = encode_chunk(with_model_columns(table, model), "parquet")
    scored = [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
              for f in encoded.schema]  # fmt: skip
    text = pa.string()
    return pa.schema([
        pa.field("_kind", pa.int8()),
        pa.field("scored", pa.struct(scored)),
        pa.field("rejected", pa.struct([("patient_id", text), ("reason", text), ("category", text)])),
        pa.field("problem", pa.struct([("file", text), ("row", pa.int64()), ("column", text),
                                       ("patient_id", text), ("test", text), ("rule", text),
                                       ("message", text), ("test_read", pa.bool_()),
                                       ("in_window", pa.bool_())])),
        pa.field("facts", pa.struct([("n_patients", pa.int64()), ("tests", pa.list_(text)),
                                     ("has_cells", pa.bool_()), ("started", pa.float64()),
                                     ("seconds", pa.map_(text, pa.float64()))])),
        pa.field("tally", pa.struct([("_kind", pa.int8()), ("label", text), ("in_window", pa.bool_()),
                                     ("test_read", pa.bool_()), ("count", pa.int64())])),
    ])  # fmt: skip


def _model_payload(model: LoadedModel) -> dict:
    data = Path(model.model_file).read_bytes()
    return {"uri": model.uri, "name": model.name, "version": model.version, "spec": model.spec.raw,
            "status": model.status, "file_name": Path(model.model_file).name, "bytes": data,
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def _problem_order(study):
    """Problems in the local engine's order: patients, labs, cells, then row."""
    from pyspark.sql import functions as F

    order = F.lit(len(sio.TABLE_ORDER))
    for code, table in reversed(list(enumerate(sio.TABLE_ORDER))):
        if table in study.tables:
            order = F.when(F.col("file") == study.tables[table].display, code).otherwise(order)
    return [order, F.col("row")]


def _tally_and_facts(scored) -> tuple[list[dict], dict]:
    """The counts (``_kind, label, in_window, test_read, count``: see :func:`_with_tally`)
    and the partitions' facts summed: one small collect, the job's first action (it runs
    the whole job and fills the cache)."""
    from pyspark.sql import functions as F

    rows = (
        scored.where(F.col("_kind").isin(FACTS, TALLY)).select("_kind", "facts", "tally").collect()
    )
    counts: collections.Counter = collections.Counter()
    total = {"n": 0, "has_cells": False, "tests": set(), "first_partition": None,
             "seconds": collections.Counter()}  # fmt: skip
    for row in rows:
        if row["_kind"] == TALLY:
            t = row["tally"]
            counts[(t["_kind"], t["label"], t["in_window"], t["test_read"])] += t["count"]
            continue
        f = row["facts"]
        total["n"] += f["n_patients"]
        total["has_cells"] |= bool(f["has_cells"])
        total["tests"] |= set(f["tests"] or [])
        first = total["first_partition"]
        total["first_partition"] = f["started"] if first is None else min(first, f["started"])
        total["seconds"].update(dict(f["seconds"] or {}))
    keys = ("_kind", "label", "in_window", "test_read")
    return [{**dict(zip(keys, k, strict=True)), "count": n} for k, n in counts.items()], total


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
        name = sidecar_name(target.name, PROBLEMS)
        with target.staging(hadoop) as stage:
            stage.write(matters.select(PROBLEM_OUTPUT).orderBy(*_problem_order(study)), "csv",
                        target.sibling(PROBLEMS), single=target.single_file)  # fmt: skip
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
    warming = _warm_python_workers(spark)  # while the driver plans
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
                               model.spec.config.singlecell)  # fmt: skip
        out_schema = _output_schema(model, options.explain, options.regimens, options.benefit)
        spark_schema = from_arrow_schema(out_schema)
        broadcast = spark.sparkContext.broadcast(_model_payload(model))
        layout = sio.hash_parts(study)
        plan = _Plan(broadcast, {k: (v.display, v.is_dir) for k, v in study.tables.items()},
                     {} if isinstance(layout, sio.HashParts) else
                     {k: to_arrow_schema(v.frame.schema) for k, v in study.tables.items()},
                     study.cells_derived, options.explain, options.regimens,
                     to_arrow_schema(spark_schema), options.benefit)  # fmt: skip
        if isinstance(layout, sio.HashParts):  # grouped by patient already: no shuffle
            n_parts, grouping = layout.n_parts, "hash parts by patient, read by the executors"
            parts = _PartFiles(n_parts, {t: [(str(sio.local_path(p.uri)), p.first_row) for p in ps]
                                         for t, ps in layout.files.items()},
                               {t: study.tables[t].columns for t in layout.files},
                               options.patients_per_chunk)  # fmt: skip
            one_each = spark.range(0, n_parts, 1, numPartitions=n_parts)
            result = one_each.mapInArrow(
                functools.partial(_score_hash_parts, plan=plan, parts=parts), spark_schema
            )
        else:
            n_parts = max(spark.sparkContext.defaultParallelism,
                          math.ceil(study.n_patients / options.patients_per_chunk))  # fmt: skip
            grouping = f"shuffled by a hash of patient_id ({layout})"
            result = _shuffled(study, n_parts, _partition_keys(spark, n_parts)).mapInArrow(
                functools.partial(_score_partition, plan=plan), spark_schema
            )
        scored = result.persist(StorageLevel.MEMORY_AND_DISK)
        timings["plan_s"] = time.perf_counter() - t

        t, started = time.perf_counter(), time.time()
        tally, total = _tally_and_facts(scored)  # the first action: runs the whole job
        _stop_on_problems(scored, study, options.strict, tally, hadoop, target)
        if total["first_partition"] is not None:  # reading and shuffling end when partitions start
            timings["read_shuffle_s"] = max(0.0, total["first_partition"] - started)
        seconds = dict(total["seconds"])
        missing = missing_inputs(model.feature_spec, total["tests"], total["has_cells"],
                                 study.tables["labs"].display)  # fmt: skip
        if missing:
            raise DataError(missing)
        timings["score_s"] = time.perf_counter() - t

        t = time.perf_counter()
        counts = {"patients_in_input": int(total["n"]),
                  "scored": sum(r["count"] for r in tally if r["_kind"] == SCORED),
                  "rejected": sum(r["count"] for r in tally if r["_kind"] == REJECTED)}  # fmt: skip
        flow = _flow(counts, tally)
        has_problems = any(r["_kind"] == PROBLEM for r in tally)
        with target.staging(hadoop) as stage:
            kind = F.col("_kind")
            stage.write(scored.where(kind == SCORED).select("scored.*"), options.fmt
                        if target.single_file else "parquet", target.uri, single=target.single_file)  # fmt: skip
            stage.write(scored.where(kind == REJECTED).select("rejected.*"), "csv",
                        target.sibling(REJECTED_FILE), single=target.single_file)  # fmt: skip
            if has_problems:
                problems = scored.where(kind == PROBLEM).select("problem.*")
                stage.write(problems.select(PROBLEM_OUTPUT), "csv", target.sibling(PROBLEMS),
                            single=target.single_file)  # fmt: skip
        timings["write_s"] = time.perf_counter() - t
        summary_uri = target.sibling(SUMMARY)
        if target.local:  # written by the job (``out`` may be a file: URI)
            write_summary = functools.partial(_write_local_json, sio.local_path(summary_uri))
        else:  # on the output's filesystem, through this session
            write_summary = functools.partial(_write_remote_json, hadoop, summary_uri,
                                              spark if created else None)  # fmt: skip
            stop = False
    finally:
        warming.join()
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
        "grouping": grouping,
        "output_layout": "file" if target.single_file else "dataset",
        "row_numbers": study.row_numbers,
    }
    return JobRun(model, counts, flow, has_problems, study.sha256, timings, details,
                      data_simulated=study.simulated, write_summary=write_summary)  # fmt: skip


def _worker_ready(_) -> None:
    """Nothing: a task that makes an executor start its Python daemon (which imports the
    scoring code, :mod:`.spark_daemon`) and fork its workers."""


def _warm_python_workers(spark) -> threading.Thread:
    """Start the executors' Python workers in the background (a few seconds each: the
    imports), so they are ready when the job's tasks arrive.

    A failure here is printed by the thread (and shows again in the job itself).
    """
    slots = spark.sparkContext.defaultParallelism

    def warm():
        spark.sparkContext.parallelize(range(slots), slots).foreach(_worker_ready)

    thread = threading.Thread(target=warm, name="msc-response-warm-workers", daemon=True)
    thread.start()
    return thread


def _shuffled(study, n_parts: int, keys: list[int]):
    """Every table's rows cut into blobs by partition on the map side and moved there."""
    cut = None
    for code, table in enumerate(sio.TABLE_ORDER):
        if table in study.tables:
            part = study.tables[table].frame.mapInArrow(
                functools.partial(_bucketize, table=code, n_parts=n_parts, keys=keys),
                "_key long, _table byte, _rows binary",
            )
            cut = part if cut is None else cut.union(part)
    return cut.repartition(n_parts, "_key")


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
    excluded, rules, outside, not_read = {}, {}, 0, 0
    for row in tally:
        if row["_kind"] == REJECTED:
            excluded[row["label"]] = excluded.get(row["label"], 0) + row["count"]
        elif row["_kind"] == PROBLEM:
            rules[row["label"]] = rules.get(row["label"], 0) + row["count"]
            outside += row["count"] if row["test_read"] and not row["in_window"] else 0
            not_read += 0 if row["test_read"] else row["count"]
    return flow_of_counts(counts["patients_in_input"], excluded, counts["rejected"], rules, outside,
                          not_read)  # fmt: skip


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
