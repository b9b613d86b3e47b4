"""build-features on 100,000 patients x 10 visits x 12 tests (12 million lab rows).

Targets (issue 3): under 20 s with peak memory under 4 GB, from CSV and from Parquet.
The study is the simulator's trial design at 100,000 patients with three extra late
visits (days 35, 42, 56, copies of day 28) to reach 10 visits. Each build runs in a
child process so its peak memory is its own.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from msc_response.simulator import write_simulation as simulate

from ._common import run_measured, write_result

N = 100_000
ROOT = Path(__file__).resolve().parents[1]


def make_study(work: Path) -> dict[str, Path]:
    base = work / "sim"
    simulate(base, design="trial", n_patients=N, seed=3, fmt="parquet", h5ad_patients=0)
    labs = pd.read_parquet(base / "labs.parquet")
    late = labs[labs["day"] == 28]
    labs = pd.concat([labs] + [late.assign(day=d) for d in (35, 42, 56)], ignore_index=True)
    dirs = {}
    for fmt in ("parquet", "csv"):
        d = work / fmt
        d.mkdir()
        table = pa.Table.from_pandas(labs, preserve_index=False)
        if fmt == "parquet":
            pq.write_table(table, d / "labs.parquet")
            shutil.copy(base / "patients.parquet", d / "patients.parquet")
            shutil.copy(base / "cells.parquet", d / "cells.parquet")
        else:
            pacsv.write_csv(
                table.cast(
                    pa.schema(
                        [
                            pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                            for f in table.schema
                        ]
                    )
                ),
                d / "labs.csv",
            )
            pd.read_parquet(base / "patients.parquet").to_csv(d / "patients.csv", index=False)
            pd.read_parquet(base / "cells.parquet").to_csv(d / "cells.csv", index=False)
        dirs[fmt] = d
    return dirs, len(labs)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        dirs, n_rows = make_study(work)
        result = {"patients": N, "lab_rows": n_rows, "target_seconds": 20, "target_peak_mb": 4096}
        for fmt, d in dirs.items():
            out = work / f"features_{fmt}.parquet"
            info = run_measured([sys.executable, "-m", "msc_response.cli", "build-features",
                                 "--config", str(ROOT / "experiments/child_pugh_day28.yaml"),
                                 "--data", str(d), "--out", str(out)])  # fmt: skip
            info["meets_target"] = info["wall_s"] < 20 and info["peak_rss_mb"] < 4096
            result[fmt] = info
        write_result("features", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
