"""Reading a study loads no Spark: pandera would import ``pyspark.pandas`` (about 2 s, a JVM library)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> list[str]:
    """The pyspark modules a fresh interpreter holds after running ``code``."""
    probe = (
        code + "\nimport sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyspark'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])  # a printed list of module names


def test_load_study_leaves_pyspark_out(study_dir):
    pytest.importorskip("pyspark")  # without it there is nothing to leave out
    code = f"import msc_response as msc; msc.load_study({str(study_dir)!r})"
    assert _modules_after(code) == []


def test_pandera_alone_would_load_it():
    """The check above can fail: plain pandera imports pyspark.pandas when pyspark is installed."""
    pytest.importorskip("pyspark")
    assert "pyspark.pandas" in _modules_after("import pandera.pandas")


def test_a_process_with_pyspark_pandas_keeps_it():
    pytest.importorskip("pyspark")
    code = "import pyspark.pandas, sys; from msc_response.study.pandera_pandas import pa; assert sys.modules['pyspark.pandas'] is not None"
    assert "pyspark.pandas" in _modules_after(code)
