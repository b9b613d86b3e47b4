"""The Spark engine beside the local engine, on the same 2 cores, in one run.

1,000,000 SIMULATED baseline-only screening patients (24,000,000 lab rows, Parquet),
scored by the whole CLI process with and without explanations (``--explain 3``), by
``--engine spark`` (``local[2]``: the driver JVM runs both task slots) and by the local
engine (2 workers), alternating, best of REPEATS. Measured: wall time; the peak memory of
the command's own process (the Spark driver's Python process, which must never hold
the lab rows, and the local engine's parent), of the largest process and of the whole
tree; and how the Spark job's time splits (from its summary: JVM start, model, plan,
reading and shuffling, validation, features, prediction, writing).

Targets (issue 13): the Spark driver's Python process peaks under 700 MB; Spark within
2x of the local engine's time.
"""

from __future__ import annotations

import json
import shutil

from _common import CLI, private_store, run_measured, write_result

N = 1_000_000
REPEATS = 2
DRIVER_LIMIT_MB = 700
#: Per-stage seconds from the Spark job's summary: wall times of the driver's phases,
#: and seconds summed over partitions (CPU of the Python workers).
WALL = (
    "start_spark_s",
    "load_model_s",
    "plan_s",
    "read_shuffle_s",
    "score_s",
    "write_s",
    "total_s",
)
SUMMED = ("receive_s", "read_validate_s", "features_s", "predict_s", "encode_s", "pack_s")


def main() -> None:
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
        simulate(work / "1m", design="screening", n_patients=N, seed=12, fmt="parquet",
                 baseline_only=True, h5ad_patients=0)  # fmt: skip
        result = {"patients": N, "lab_rows": 24 * N, "model": summary["primary_model"], "runs": {}}
        for label, extra in (("with_explain", ["--explain", "3"]), ("without_explain", [])):
            for engine in ("local", "spark"):
                result["runs"][f"{engine}_{label}"] = {"all_wall_s": [], "runs": []}
            for _ in range(REPEATS):  # alternating, so both engines see the same machine
                for engine in ("local", "spark"):
                    out = work / f"{engine}_{label}.parquet"
                    cmd = [*CLI, "score", "--model", uri, "--data", str(work / "1m"),
                           "--out", str(out), "--engine", engine, *extra]  # fmt: skip
                    info = run_measured(cmd)
                    job = json.loads(out.with_name(out.stem + ".summary.json").read_text())
                    info["timings"] = job["timings"]
                    info["details"] = {
                        k: job.get(k) for k in ("workers", "partitions", "spark_master")
                    }
                    entry = result["runs"][f"{engine}_{label}"]
                    entry["all_wall_s"].append(info["wall_s"])
                    entry["runs"].append(info)
                    out.unlink()
        best = {}
        for name, entry in result["runs"].items():
            runs = entry.pop("runs")
            b = min(runs, key=lambda r: r["wall_s"])
            b["peak_rss_command_mb"] = max(r["peak_rss_command_mb"] for r in runs)
            b["patients_per_second"] = round(N / b["wall_s"])
            entry.update(b)
            best[name] = b
        for label in ("with_explain", "without_explain"):
            spark, local = best[f"spark_{label}"], best[f"local_{label}"]
            t = spark["timings"]
            result[f"spark_vs_local_{label}"] = round(spark["wall_s"] / local["wall_s"], 2)
            result[f"spark_split_{label}"] = {
                "wall": {k: t.get(k) for k in WALL},
                "summed_over_partitions": {k: t.get(k) for k in SUMMED},
            }
        driver = max(
            best[f"spark_{x}"]["peak_rss_command_mb"] for x in ("with_explain", "without_explain")
        )
        result["spark_driver_peak_rss_mb"] = driver
        result["local_parent_peak_rss_mb"] = max(
            best[f"local_{x}"]["peak_rss_command_mb"] for x in ("with_explain", "without_explain")
        )
        result["targets"] = {
            "spark_driver_peak_rss_mb": f"< {DRIVER_LIMIT_MB}",
            "spark_vs_local": "<= 2",
        }
        result["meets"] = {
            "spark_driver_peak_rss_mb": driver < DRIVER_LIMIT_MB,
            "spark_vs_local_with_explain": result["spark_vs_local_with_explain"] <= 2,
            "spark_vs_local_without_explain": result["spark_vs_local_without_explain"] <= 2,
        }
        write_result("spark", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
