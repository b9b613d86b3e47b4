"""PySpark's Python worker daemon with the scoring code imported before it forks workers.

Spark starts one daemon per executor (``spark.python.daemon.module``) and forks a Python
worker from it for each task slot. Importing pandas, pyarrow, LightGBM, SciPy, pandera
and this package once here, instead of in every forked worker, saves each worker several
seconds of CPU (as the local engine's forkserver does).
"""

import lightgbm  # noqa: F401
import scipy.special  # noqa: F401
from pyspark.daemon import manager

import msc_response.pipelines.score.chunk
import msc_response.pipelines.score.spark  # noqa: F401

if __name__ == "__main__":
    manager()
