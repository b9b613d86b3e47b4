"""Simulator throughput: 1,000,000 patients written as Parquet (target: under 90 s), peak memory."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from ._common import run_measured, write_result

N = 1_000_000


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_sim_"))
    try:
        out = work / "screening"
        info = run_measured([sys.executable, "-m", "msc_response.cli", "simulate", "--design", "screening",
                             "--n-patients", str(N), "--seed", "1", "--format", "parquet",
                             "--h5ad-patients", "0", "--out", str(out)])  # fmt: skip
        rows = pq.ParquetFile(out / "labs.parquet").metadata.num_rows
        write_result("simulate", {
            "patients": N, "lab_rows": rows, **info,
            "lab_rows_per_second": round(rows / info["wall_s"]),
            "target_seconds": 90, "meets_target": info["wall_s"] < 90,
        })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
