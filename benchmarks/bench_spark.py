"""The Spark engine beside the local engine, on the same 2 cores: fixed and marginal cost.

SIMULATED baseline-only screening patients (24 lab rows each, Parquet) at two sizes
(default 1,000,000 and 4,000,000), scored by the whole CLI process with and without
explanations (``--explain 3``), by ``--engine spark`` (``local[2]``: the driver JVM runs
both task slots) and by the local engine (2 workers), alternating, ``--repeats`` times.

The studies are written as hash parts by patient (``simulate --parts``, one part per
``--patients-per-part``), so the Spark engine reads them without a shuffle;
``--patients-per-part 0`` writes single files (the shuffle path).

Reported per engine and explanation setting: the wall times; the **marginal cost** per
patient, ``(wall(n2) - wall(n1)) / (n2 - n1)`` from the best runs (and its range over
every pair of runs: the Monte Carlo spread), and the **fixed cost** ``wall(n1) -
n1 x marginal``; the Spark job's own split from its summary at each size (JVM start,
model, plan, reading, scoring, writing; seconds summed over partitions); peak memory of
the command's own process (the Spark driver's Python must never hold the lab rows).

Targets (issue 25): Spark's marginal cost <= 2 x the local engine's; Spark's fixed cost
<= 20 s. Quick run: ``python -m benchmarks.bench_spark --sizes 100000 400000``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess

from ._common import CLI, private_store, run_measured, write_result

SIZES = (1_000_000, 4_000_000)
PATIENTS_PER_PART = 50_000
DRIVER_LIMIT_MB = 700
MARGINAL_RATIO_LIMIT = 2.0
FIXED_LIMIT_S = 20.0
LABELS = {"with_explain": ["--explain", "3"], "without_explain": []}
#: Per-stage seconds from the Spark job's summary: wall times of the driver's phases,
#: and seconds summed over partitions (CPU of the Python workers).
WALL = ("start_spark_s", "load_model_s", "plan_s", "read_shuffle_s", "score_s", "write_s",
        "total_s")  # fmt: skip
SUMMED = ("receive_s", "read_validate_s", "features_s", "predict_s", "encode_s", "pack_s")


def _arguments(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_spark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", type=int, nargs=2, default=list(SIZES), metavar=("N1", "N2"))
    p.add_argument("--repeats", type=int, default=1, help="runs per engine, setting and size")
    p.add_argument("--labels", nargs="+", choices=list(LABELS), default=list(LABELS))
    p.add_argument("--patients-per-part", type=int, default=PATIENTS_PER_PART,
                   help="hash parts by patient of this size (0: one file per table)")  # fmt: skip
    return p.parse_args(argv)


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _marginal(small: list[float], large: list[float], dn: int) -> dict:
    """Marginal seconds per patient from the best runs, with the range over every pair."""
    pairs = [(b - a) / dn for a in small for b in large]
    best = (min(large) - min(small)) / dn
    return {"marginal_us_per_patient": round(best * 1e6, 3),
            "marginal_us_range": [round(min(pairs) * 1e6, 3), round(max(pairs) * 1e6, 3)]}  # fmt: skip


def main(argv=None) -> None:
    args = _arguments(argv)
    n1, n2 = sorted(args.sizes)
    work = private_store("bench_spark_")
    from msc_response import tracking
    from msc_response.config import config_from_dict
    from msc_response.pipelines.train import train
    from msc_response.simulator import write_simulation as simulate

    try:
        tracking.configure()
        simulate(work / "train", design="screening", n_patients=2000, seed=11, h5ad_patients=0)
        summary = train(config_from_dict({"name": "bench-spark", "model": {"candidates": ["lightgbm"]}}),
                        work / "train")  # fmt: skip
        uri = f"models:/bench-spark/{summary['version']}"
        result = {"sizes": [n1, n2], "lab_rows_per_patient": 24, "model": summary["primary_model"],
                  "patients_per_part": args.patients_per_part, "repeats": args.repeats,
                  "load_before": _load(), "runs": {}}  # fmt: skip
        for n in (n1, n2):
            parts = math.ceil(n / args.patients_per_part) if args.patients_per_part else 0
            study = work / f"study_{n}"
            simulate(study, design="screening", n_patients=n, seed=12, fmt="parquet",
                     baseline_only=True, h5ad_patients=0, parts=parts)  # fmt: skip
            for label in args.labels:
                for engine in ("local", "spark"):
                    result["runs"].setdefault(f"{engine}_{label}", {})[str(n)] = []
                for _ in range(args.repeats):  # alternating: both engines see the same machine
                    for engine in ("local", "spark"):
                        out = work / f"{engine}_{label}.parquet"
                        cmd = [*CLI, "score", "--model", uri, "--data", str(study),
                               "--out", str(out), "--engine", engine, *LABELS[label]]  # fmt: skip
                        info = run_measured(cmd)
                        job = json.loads(out.with_name(out.stem + ".summary.json").read_text())
                        info["timings"] = job["timings"]
                        info["details"] = {k: job.get(k) for k in
                                           ("workers", "partitions", "spark_master", "grouping")}  # fmt: skip
                        info["load_after"] = _load()
                        result["runs"][f"{engine}_{label}"][str(n)].append(info)
                        out.unlink()
            shutil.rmtree(study)
        result["load_after"] = _load()
        _summarise(result, n1, n2)
        write_result("spark", result)
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _summarise(result: dict, n1: int, n2: int) -> None:
    costs, meets = {}, {}
    for name, by_size in result["runs"].items():
        small = [r["wall_s"] for r in by_size[str(n1)]]
        large = [r["wall_s"] for r in by_size[str(n2)]]
        cost = _marginal(small, large, n2 - n1)
        cost["fixed_s"] = round(min(small) - n1 * cost["marginal_us_per_patient"] / 1e6, 2)
        cost["best_wall_s"] = {str(n1): min(small), str(n2): min(large)}
        cost["peak_rss_command_mb"] = max(
            r["peak_rss_command_mb"] for r in [*by_size[str(n1)], *by_size[str(n2)]]
        )
        if name.startswith("spark"):
            cost["split"] = {}
            for n in (n1, n2):
                best = min(by_size[str(n)], key=lambda r: r["wall_s"])
                t = best["timings"]
                cost["split"][str(n)] = {
                    "wall": {k: t.get(k) for k in WALL},
                    "summed_over_partitions": {k: t.get(k) for k in SUMMED},
                    "grouping": best["details"]["grouping"],
                    "partitions": best["details"]["partitions"],
                }
        costs[name] = cost
    for label in {k.split("_", 1)[1] for k in costs}:
        spark, local = costs[f"spark_{label}"], costs[f"local_{label}"]
        ratio = spark["marginal_us_per_patient"] / local["marginal_us_per_patient"]
        result[f"spark_vs_local_marginal_{label}"] = round(ratio, 2)
        meets[f"marginal_{label}"] = ratio <= MARGINAL_RATIO_LIMIT
        meets[f"fixed_{label}"] = spark["fixed_s"] <= FIXED_LIMIT_S
        meets[f"driver_memory_{label}"] = spark["peak_rss_command_mb"] < DRIVER_LIMIT_MB
    result["costs"] = costs
    result["targets"] = {"spark_vs_local_marginal": f"<= {MARGINAL_RATIO_LIMIT}",
                         "spark_fixed_s": f"<= {FIXED_LIMIT_S}",
                         "spark_driver_peak_rss_mb": f"< {DRIVER_LIMIT_MB}"}  # fmt: skip
    result["meets"] = meets


if __name__ == "__main__":
    main()
