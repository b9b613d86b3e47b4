"""Throughput of the vectorised score functions on 1,000,000 rows (target >= 1e6 rows/s)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from msc_response.scores import add_scores

from ._common import write_result

N = 1_000_000
TARGET_ROWS_PER_S = 1_000_000


def make_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "bilirubin": rng.lognormal(0.7, 0.6, n),
            "albumin": rng.normal(3.0, 0.5, n).clip(1.0, 5.5),
            "inr": rng.lognormal(0.35, 0.2, n),
            "creatinine": rng.lognormal(0.1, 0.4, n),
            "sodium": rng.normal(135, 4, n),
            "ascites": rng.integers(0, 3, n).astype(float),
            "encephalopathy": rng.integers(0, 5, n).astype(float),
            "dialysis": (rng.random(n) < 0.02).astype(float),
            "sex": np.where(rng.random(n) < 0.3, "F", "M"),
        }
    )


def main() -> None:
    rows = make_rows(N)
    add_scores(rows.head(1000))  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        add_scores(rows)
        times.append(time.perf_counter() - start)
    best = min(times)
    write_result(
        "scores",
        {
            "rows": N,
            "seconds_best_of_3": round(best, 3),
            "rows_per_second": round(N / best),
            "target_rows_per_second": TARGET_ROWS_PER_S,
            "meets_target": N / best >= TARGET_ROWS_PER_S,
        },
    )


if __name__ == "__main__":
    main()
