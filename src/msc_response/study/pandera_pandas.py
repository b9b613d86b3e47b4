"""pandera's pandas API, imported without loading Spark.

pandera 0.35 imports ``pyspark.pandas`` whenever pyspark is installed, even through its
pandas-only entry point ``pandera.pandas`` (``pandera.external_config``): about 2 s and a
JVM library in every process that reads a study, a notebook that never asked for Spark
included. The reader validates pandas frames only, and pandera picks its backend from
the frame's type, so the import runs with ``pyspark.pandas`` marked absent for its
duration (pandera catches the ImportError); a process that has already imported
``pyspark.pandas`` keeps it, and nothing is left changed afterwards.
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def _absent(module: str):
    """``import module`` raises ImportError inside the block (unless it is imported already)."""
    if module in sys.modules:
        yield
        return
    sys.modules[module] = None  # the import system's "not importable" mark
    try:
        yield
    finally:
        if sys.modules.get(module, "") is None:
            del sys.modules[module]


with _absent("pyspark.pandas"):
    import pandera.pandas as pa

__all__ = ["pa"]
