"""The Spark engine of the scoring job (probabilities through ``mlflow.pyfunc.spark_udf``).

Features are built per chunk in the driver, as for the local engine; Spark predicts them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tracking
from ..config import config_from_dict
from ..io import ChunkWriter, atomic_path, encode_chunk
from ..modeling.predict import check_regimens, predict_features
from ..modeling.registry import load_model
from ..study import StudySource


def spark_session():
    """A Spark session on ``MSC_RESPONSE_SPARK_MASTER`` (default ``local[2]``, no UI) using this Python."""
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


def spark_scored(task, X: pd.DataFrame, ids, spark) -> pd.DataFrame:
    """The chunk's prediction table with probabilities from Spark (explanations computed here)."""
    model = task.model
    table = predict_features(
        model.fitted, X, ids, model.threshold, explain=task.explain, regimens=task.regimens
    )
    table["probability"] = np.round(_spark_predict(model.uri, X, spark), 6)
    table["predicted_response"] = (table["probability"] >= model.threshold).astype(int)
    return table


def _spark_predict(uri: str, X: pd.DataFrame, spark) -> np.ndarray:
    """Probabilities through ``mlflow.pyfunc.spark_udf`` on the same feature matrix."""
    import mlflow
    from pyspark.sql import functions as F

    cols = list(X.columns)
    frame = X.assign(_order=np.arange(len(X)))
    sdf = spark.createDataFrame(frame)
    with tracking.using():
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    scored = sdf.withColumn("probability", udf(F.struct(*[F.col(c) for c in cols])))
    result = scored.select("_order", "probability").toPandas().sort_values("_order")
    return result["probability"].to_numpy(dtype=float)


def run_spark_job(model_uri: str, data_dir, out, options):
    """Score through Spark; see :func:`msc_response.pipelines.score.score`."""
    import time

    from . import score as job

    t0 = time.perf_counter()
    source = StudySource(data_dir)
    model = load_model(model_uri)
    if options.regimens:
        check_regimens(model)
    timings = {"load_model_s": round(time.perf_counter() - t0, 3)}
    source.derive_h5ad_cells(config_from_dict(model.spec["config"]).singlecell)
    task = job._Task(model, {k: str(v) for k, v in source.paths.items()}, source.h5ad_cells is not None,
                     options.explain, options.regimens, options.fmt)  # fmt: skip
    spark = spark_session()
    tally = job._Tally()
    try:
        parent = out.parent if out.parent.exists() else None
        with (
            tempfile.TemporaryDirectory(prefix="msc-score-", dir=parent) as tmp,
            atomic_path(out) as tmp_out,
        ):
            writer = ChunkWriter(tmp_out, options.fmt)
            for chunk in source.partitioned_chunks(options.patients_per_chunk, Path(tmp)):
                result = job._score_chunk(task, chunk, predict=False)
                tally.counts["patients_in_input"] += result.n_patients
                tally.tests |= result.tests
                tally.has_cells |= result.has_cells
                tally.rejected.append(result.rejected)
                if len(result.problems):
                    tally.problems.append(result.problems)
                tally.seconds.update(result.seconds)
                if not result.X.empty:
                    table = job._with_model_columns(
                        spark_scored(task, result.X, result.ids, spark), model
                    )
                    writer.write_encoded(encode_chunk(table, options.fmt))
                    tally.counts["scored"] += len(table)
            writer.close(empty_columns=job.OUTPUT_COLUMNS)
            flow, has_problems = job.finish_outputs(
                out, model, tally, options.strict, source.files["labs"]
            )
    finally:
        spark.stop()
    timings.update({k: round(v, 3) for k, v in sorted(tally.seconds.items())})
    return job.JobRun(
        model, tally.counts, flow, has_problems, source.sha256, timings, {"workers": 1}
    )
