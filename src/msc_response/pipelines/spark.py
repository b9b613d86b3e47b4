"""The Spark engine of the scoring job (probabilities through ``mlflow.pyfunc.spark_udf``).

Features are built per chunk by the job, as for the local engine; Spark predicts them.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

from .. import tracking
from ..modeling.predict import predict_features


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
