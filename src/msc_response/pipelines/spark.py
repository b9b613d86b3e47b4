"""The Spark engine of the scoring job: the executors read, validate, featurise and score.

What runs where
---------------
* **Driver** (this process, no data rows): finds the study's tables through Hadoop's
  FileSystem (local paths, ``hdfs://``, ``s3a://``: :mod:`.spark_io`), checks their
  headers and column types with the local reader's own rules, counts patients from the
  Parquet footers (or the CSV's splits), loads the model from the registry and
  broadcasts its file and spec.
* **Executors**: Spark reads the three tables (CSV: every declared column as text), gives
  every row its 1-based row of the file, puts them in one DataFrame and repartitions it by
  ``patient_id`` (stripped of surrounding spaces, so a padded id meets its patient, as in
  the local reader). Each partition is one chunk in a Python worker (``mapInArrow``):
  its rows, in file order, go through the local engine's own per-chunk work,
  :func:`~msc_response.pipelines.score._score_chunk` (``study_from_chunk``,
  ``features_from_study``, ``predict_features`` with explanations and what-if regimens).
  The model file is written and loaded once per Python worker. A partition returns its
  predictions, rejected patients, row problems, structural problems and facts (patients,
  tests reported, seconds spent), each row tagged with its kind.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import config_from_dict
from ..errors import DataError
from ..features import sidecar
from ..io import encode_chunk
from ..modeling.predict import check_regimens, missing_inputs, predict_features
from ..modeling.registry import LoadedModel, load_model
from ..study import StudyChunk
from ..study.problems import SHOWN_PER_RULE, as_problems
from . import spark_io as sio

# Kinds of the rows a partition returns (column ``_kind``)
SCORED, REJECTED, PROBLEM, STRUCTURAL, FACTS = range(5)

#: The row problems' columns in the ``.problems.csv`` output (as the local engine writes them).
PROBLEM_OUTPUT = ["file", "row", "column", "patient_id", "rule", "message", "in_window"]


def spark_session():
    """``(session, created)``: the active Spark session, or a new one on ``MSC_RESPONSE_SPARK_MASTER``.

    A new session (default master ``local[2]``, no UI) runs this Python in its workers;
    on a ``local*`` master its executors also import this very ``msc_response`` (the
    executors of ``local-cluster`` start in their own directories). An active session
    (a notebook's, a test's, ``spark-submit``'s) is used as it is and left running.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    master = os.environ.get("MSC_RESPONSE_SPARK_MASTER", "local[2]")
    builder = (
        SparkSession.builder.master(master)
        .appName("msc-response-score")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.daemon.module", "msc_response.pipelines.spark_daemon")
    )
    if master.startswith("local"):
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
    layout: dict  # table -> [(column, union column)]
    cells_derived: bool
    explain: int
    regimens: bool
    out_schema: pa.Schema


#: The scoring task of this Python worker (its model loaded once), by model and options.
_WORKER_TASK: dict = {}


def _worker_task(plan: _Plan):
    """The local engine's ``_Task`` for this worker: the model file written and loaded once."""
    from pyspark import SparkFiles

    from . import score as job

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
    task = job._Task(model, stand_ins, plan.cells_derived, plan.explain, plan.regimens, "parquet")
    _WORKER_TASK.clear()
    _WORKER_TASK[key] = task
    return task


def _chunk_of(union: pa.Table, layout) -> StudyChunk:
    """The partition's rows of each table, in file order, with ``_row`` (the local reader's shape)."""
    kind, row = sio.table_and_row(union.column("_tr").to_numpy())
    out = {}
    for code, table in enumerate(sio.TABLE_ORDER):
        if table not in layout:
            continue
        at = np.flatnonzero(kind == code)
        columns = [union.column(slot).take(pa.array(at)) for _, slot in layout[table]]
        t = pa.Table.from_arrays([*columns, pa.array(row[at])],
                                 names=[name for name, _ in layout[table]] + ["_row"])  # fmt: skip
        order = t.column("_row").to_numpy()
        if len(order) > 1 and (np.diff(order) < 0).any():
            t = t.take(pa.array(np.argsort(order, kind="stable")))
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
    from . import score as job

    t = time.perf_counter()
    batches = list(batches)
    schema = plan.out_schema
    if not batches or sum(b.num_rows for b in batches) == 0:
        return
    union = pa.Table.from_batches(batches)
    seconds = {"receive_s": time.perf_counter() - t}
    task = _worker_task(plan)
    try:
        result = job._score_chunk(task, _chunk_of(union, plan.layout))
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
         pa.array([result.has_cells], pa.bool_()),
         pa.array([list(seconds.items())], pa.map_(pa.string(), pa.float64()))],
        fields=list(facts_type),
    )  # fmt: skip
    out.append(_tagged(FACTS, facts, "facts", 1, schema))
    yield from out


# ----------------------------------------------------------------------------------------
# driver


def _output_schema(model: LoadedModel, explain: int, regimens: bool) -> pa.Schema:
    """The tagged rows a partition returns; the predictions' columns from a one-row dry run."""
    from . import score as job

    X = pd.DataFrame(
        np.full((1, len(model.feature_columns)), np.nan), columns=model.feature_columns
    )
    table = predict_features(model.fitted, X, np.array(["-"], dtype=object), model.threshold,
                             explain=explain, regimens=regimens)  # fmt: skip
    encoded = encode_chunk(job._with_model_columns(table, model), "parquet")
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
                                     ("has_cells", pa.bool_()),
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


def _stop_on_problems(scored, study, strict: bool, hadoop, target: sio.Target):
    """Raise what stops the job: structural problems, and any row problem with ``strict``.

    With ``strict`` and more problems than a message shows, the full list is written as
    ``.problems.csv`` (the only output), as the command line does for the local engine.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kinds = dict(scored.groupBy("_kind").count().collect())
    if kinds.get(STRUCTURAL):
        found = scored.where(F.col("_kind") == STRUCTURAL).select("problem.*")
        shown = found.orderBy(*_problem_order(study)).limit(1000).toPandas()
        raise DataError(as_problems(shown), hidden=kinds[STRUCTURAL] - len(shown))
    if not strict:
        return kinds
    matters = scored.where((F.col("_kind") == PROBLEM) & F.col("problem.in_window")).select(
        "problem.*"
    )
    n = matters.count()
    if not n:
        return kinds
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
    """Score through Spark; see :func:`msc_response.pipelines.score.score`.

    ``data_dir`` and ``out`` may be any URI Hadoop's FileSystem reads (``hdfs://``,
    ``s3a://``, ``file:``) or local paths.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    from . import score as job

    t0 = time.perf_counter()
    spark, created = spark_session()
    timings = {"start_spark_s": time.perf_counter() - t0}
    hadoop = sio.Hadoop(spark)
    broadcast = scored = None
    try:
        t = time.perf_counter()
        model = load_model(model_uri)
        if options.regimens:
            check_regimens(model)
        timings["load_model_s"] = time.perf_counter() - t
        t = time.perf_counter()
        target = sio.Target(str(out), options.fmt)
        study = sio.read_study(spark, hadoop, str(data_dir),
                               config_from_dict(model.spec["config"]).singlecell)  # fmt: skip
        out_schema = _output_schema(model, options.explain, options.regimens)
        spark_schema = from_arrow_schema(out_schema)
        broadcast = spark.sparkContext.broadcast(_model_payload(model))
        plan = _Plan(broadcast, {k: (v.display, v.is_dir) for k, v in study.tables.items()},
                     study.layout(), study.cells_derived, options.explain, options.regimens,
                     to_arrow_schema(spark_schema))  # fmt: skip
        n_parts = max(spark.sparkContext.defaultParallelism,
                      math.ceil(study.n_patients / options.patients_per_chunk))  # fmt: skip
        partitioned = study.union().repartition(n_parts, sio.partition_key())
        scored = partitioned.mapInArrow(
            functools.partial(_score_partition, plan=plan), spark_schema
        ).persist(StorageLevel.MEMORY_AND_DISK)
        timings["plan_s"] = time.perf_counter() - t

        t = time.perf_counter()
        kinds = _stop_on_problems(scored, study, options.strict, hadoop, target)
        facts = scored.where(F.col("_kind") == FACTS).select("facts.*")
        total = facts.agg(
            F.sum("n_patients").alias("n"),
            F.max("has_cells").alias("has_cells"),
            F.array_sort(F.array_distinct(F.flatten(F.collect_list("tests")))).alias("tests"),
        ).first()
        seconds = dict(
            facts.select(F.explode("seconds")).groupBy("key").agg(F.sum("value")).collect()
        )
        missing = missing_inputs(model.feature_spec, set(total["tests"] or []),
                                 bool(total["has_cells"]), study.tables["labs"].display)  # fmt: skip
        if missing:
            raise DataError(missing)
        labels = F.when(F.col("_kind") == REJECTED, F.col("rejected.category")).otherwise(
            F.col("problem.rule"))  # fmt: skip
        tallies = (scored.where(F.col("_kind").isin(REJECTED, PROBLEM))
                   .groupBy("_kind", labels.alias("label"), F.col("problem.in_window").alias("in_window"))
                   .count().collect())  # fmt: skip
        timings["score_s"] = time.perf_counter() - t

        t = time.perf_counter()
        counts = {"patients_in_input": int(total["n"] or 0), "scored": int(kinds.get(SCORED, 0)),
                  "rejected": int(kinds.get(REJECTED, 0))}  # fmt: skip
        flow = _flow(counts, tallies)
        has_problems = bool(kinds.get(PROBLEM))
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
    finally:
        if scored is not None:
            scored.unpersist()
        if broadcast is not None:
            broadcast.destroy()
        if created:
            spark.stop()
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings.update({k: round(v, 3) for k, v in sorted(seconds.items())})  # summed over partitions
    details = {
        "spark_master": study.master,
        "partitions": n_parts,
        "output_layout": "file" if target.single_file else "dataset",
        "row_numbers": study.row_numbers,
    }
    write_summary = None if target.local else functools.partial(_write_remote_json, hadoop,
                                                                  target.sibling(".summary.json"))  # fmt: skip
    return job.JobRun(model, counts, flow, has_problems, study.sha256, timings, details,
                      data_simulated=study.simulated, write_summary=write_summary)  # fmt: skip


def _flow(counts: dict, tallies) -> dict:
    """The patient flow of :func:`~msc_response.features.patient_flow`, from Spark's counts."""
    excluded, rules, outside = {}, {}, 0
    for row in tallies:
        if row["_kind"] == REJECTED:
            excluded[row["label"]] = excluded.get(row["label"], 0) + row["count"]
        else:
            rules[row["label"]] = rules.get(row["label"], 0) + row["count"]
            outside += 0 if row["in_window"] else row["count"]
    flow = {
        "patients_in_input": counts["patients_in_input"],
        "excluded": {k: int(excluded[k]) for k in sorted(excluded)},
        "n_excluded": counts["rejected"],
        "included": counts["patients_in_input"] - counts["rejected"],
    }
    if rules:
        flow["rows_with_problems"] = {k: int(rules[k]) for k in sorted(rules)}
        flow["rows_with_problems_outside_windows"] = int(outside)
    return flow


def _write_remote_json(hadoop, uri: str, summary: dict) -> None:
    """The run summary on the output's filesystem, written beside it and renamed into place."""
    import json

    hadoop.write_text_atomic(uri, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
