"""The batch scoring job at scale, on SIMULATED screening cohorts (baseline visits only).

1,000,000 and 4,000,000 patients (24 lab rows each, Parquet) scored with and without
explanations by the whole CLI as a child process (start-up, model lookup, reading,
validation, features, prediction, writing, the MLflow record), next to bare
``booster.predict`` and ``booster.predict(pred_contrib=True)`` of the same champion on
the 1,000,000-patient feature matrix, on all cores (LightGBM's default, what the job
uses through its workers) and on one thread (for reference).

The record kept (issue 13): whole-job times, and the marginal throughput - the patients
added from 1M to 4M over the time they added - which leaves out the fixed start-up cost
(Python, MLflow, the registry: about 7 s). Targets (issue 6): with explanations >= 0.6 x
the bare pred_contrib throughput; 1,000,000 with explanations in under 2 minutes; peak
memory under 2 GB at 1M and within 20% of that at 4M. (The former target "without
explanations >= 0.25 x bare predict" is withdrawn: at 1M it left 7 s for a job whose
fixed start-up alone takes about that.) Issue 25: marginal throughput without explanations
>= 0.4 x bare one-thread ``predict``; with top-3 explanations >= 0.8 x bare ``pred_contrib``;
peak memory at 4M within 20% of 1M.

Where the time goes (``profile_s``): each job's stage timings from its summary, summed
over the workers - read (Parquet rows), type (declared types), validate (the data
contract's rules), window (values picked in the baseline window), features (the rest of
the feature builder), predict (LightGBM, explanations), encode + write (the output) - and
the 4M-1M difference of each (``marginal_profile_s``), with the machine's load average
before and after each job. ``--sizes 200000,800000 --repeats 1`` is a quick run.

CPU (``cpu_s``: the workers' process time summed over chunks; ``main_cpu_s``: the job's
own process - planning, the model, writing): wall times on a shared machine are upper
bounds, CPU seconds much less so. ``marginal_cpu_us_per_patient`` is the CPU the 1M-4M
patients added, per patient, next to the bare calls' CPU per patient on one thread;
``cpu_ratios`` are what the wall ratios would be with that CPU spread over the job's
workers' cores and nothing else running (an upper bound of the quiet machine's ratio,
not a replacement for it): workers x bare CPU per patient / job CPU per patient.

``explain_chunk``: the CPU per patient (one thread, best of at least 5) of explaining one
chunk of the job's default size with LightGBM's ``pred_contrib`` and with the per-tree
tables the job uses (the same values, looked up), their largest difference, and the
tables' one-off build time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np
import pandas as pd

from ._common import CLI, private_store, run_measured, write_result

N, N_BIG = 1_000_000, 4_000_000
REPEATS = 2
#: Stage timings of the job's summary (summed over workers), in the order the work is done;
#: read_validate_s = read_s + type_s + validate_s and window_s is part of features_s.
STAGES = ("read_s", "type_s", "validate_s", "window_s", "features_s", "predict_s", "encode_s",
          "write_s", "cpu_s", "main_cpu_s")  # fmt: skip


def _label(n: int) -> str:
    """``1m`` for 1,000,000 patients, ``200k`` for 200,000 (the keys of the result)."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


def _profile(timings: dict) -> dict:
    """Seconds per stage; ``features_s`` without its ``window_s`` (the two add up)."""
    out = {k: round(timings.get(k, 0.0), 3) for k in STAGES}
    out["features_s"] = round(out["features_s"] - out["window_s"], 3)
    return out


def _explain_chunk(fitted, X, repeats: int) -> dict:
    """CPU per patient (one thread, best of ``repeats``) of explaining one chunk of the
    job's size: LightGBM's ``pred_contrib`` against the per-tree tables the job looks the
    same values up in (:mod:`msc_response.modeling.tree_tables`), and the largest
    difference between the two (log-odds)."""
    from msc_response.modeling import tree_tables

    frame = pd.DataFrame(X, columns=fitted.feature_columns)
    start = time.perf_counter()
    covered = tree_tables.tables_for(fitted.estimator) is not None  # built once per worker
    out = {"patients": len(X), "tables_covered": covered,
           "tables_build_s": round(time.perf_counter() - start, 4)}  # fmt: skip
    results = {}
    for key, tables in (("pred_contrib", False), ("tables", True)):
        best = float("inf")
        for _ in range(repeats):
            cpu = time.process_time()
            results[key] = fitted.contributions(frame, tables=tables)[0]
            best = min(best, time.process_time() - cpu)
        out[f"{key}_cpu_us_per_patient"] = round(1e6 * best / len(X), 3)
    out["max_abs_difference"] = float(np.abs(results["tables"] - results["pred_contrib"]).max())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"{N},{N_BIG}",
                        help="the two cohort sizes, small,big (default %(default)s)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="runs of each job and bare call; the best counts (default %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    n_small, n_big = (int(x) for x in args.sizes.split(","))
    if not 0 < n_small < n_big:
        parser.error(f"--sizes: expected two sizes, the first smaller, got {args.sizes!r}")
    small, big = _label(n_small), _label(n_big)
    repeats = args.repeats
    work = private_store("bench_score_")
    from msc_response import tracking
    from msc_response.config import config_from_dict
    from msc_response.features import build_features
    from msc_response.pipelines.score.job import DEFAULT_PATIENTS_PER_CHUNK
    from msc_response.pipelines.train import train
    from msc_response.registry.load import load_model
    from msc_response.simulator import write_simulation as simulate

    cli = CLI
    try:
        tracking.configure()
        simulate(work / "train", design="screening", n_patients=2000, seed=11, h5ad_patients=0)
        cfg = config_from_dict({"name": "bench-score", "model": {"candidates": ["lightgbm"]}})
        summary = train(cfg, work / "train")
        uri = f"models:/bench-score/{summary['version']}"
        result = {"model": summary["primary_model"], "patients": n_small, "sizes": [n_small, n_big]}
        for n, name in ((n_small, small), (n_big, big)):
            simulate(work / name, design="screening", n_patients=n, seed=12, fmt="parquet",
                     baseline_only=True, h5ad_patients=0)  # fmt: skip
        # this machine's speed drifts by +/-10% between runs: every job and every bare call
        # is the best of REPEATS (the marginal throughput takes the difference of two)
        for label, extra, data in ((f"with_explain_{small}", ["--explain", "3"], small),
                                   (f"without_explain_{small}", [], small),
                                   (f"with_explain_{big}", ["--explain", "3"], big),
                                   (f"without_explain_{big}", [], big)):  # fmt: skip
            out = work / f"{label}.parquet"
            cmd = [
                *cli,
                "score",
                "--model",
                uri,
                "--data",
                str(work / data),
                "--out",
                str(out),
                *extra,
            ]
            runs = []
            for _ in range(repeats):
                load_before = os.getloadavg()[0]
                info = run_measured(cmd)
                info["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
                info["job_timings_s"] = summary["timings"]  # per stage, summed over workers
                info["profile_s"] = _profile(summary["timings"])
                info["workers"] = summary["workers"]
                info["input_grouped_by_patient"] = summary["input_grouped_by_patient"]
                runs.append(info)
            info = min(runs, key=lambda r: r["wall_s"])
            info["all_wall_s"] = [r["wall_s"] for r in runs]
            info["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            n = n_small if data == small else n_big
            info["patients_per_second"] = round(n / info["wall_s"])
            result[label] = info
            out.unlink()
        model = load_model(uri)
        fs = build_features(model.spec.config, work / small, labels=False)
        X = fs.table[model.feature_columns].astype(float).to_numpy()
        booster = model.fitted.estimator
        bare, bare_1, bare_cpu = {}, {}, {}
        for key, kwargs in (("predict", {}), ("pred_contrib", {"pred_contrib": True})):
            for store, threads in ((bare, 0), (bare_1, 1)):  # 0: LightGBM's default, all cores
                best = best_cpu = float("inf")
                for _ in range(repeats):
                    start, cpu = time.perf_counter(), time.process_time()
                    booster.predict(X, num_threads=threads, **kwargs)
                    best = min(best, time.perf_counter() - start)
                    best_cpu = min(best_cpu, time.process_time() - cpu)
                store[key] = round(n_small / best)
                if threads == 1:
                    bare_cpu[key] = round(1e6 * best_cpu / n_small, 3)
        chunk = X[:DEFAULT_PATIENTS_PER_CHUNK]  # one chunk of the job's default size
        result["explain_chunk"] = _explain_chunk(model.fitted, chunk, max(repeats, 5))
        result["bare_patients_per_second"] = bare
        result["bare_patients_per_second_one_thread"] = bare_1
        w, wo = result[f"with_explain_{small}"], result[f"without_explain_{small}"]
        result["marginal_patients_per_second"] = {  # the patients added over the time they added
            label: round(
                (n_big - n_small)
                / (result[f"{label}_{big}"]["wall_s"] - result[f"{label}_{small}"]["wall_s"])
            )
            for label in ("with_explain", "without_explain")
        }
        result["marginal_profile_s"] = {  # where the added time went, per stage (all workers)
            label: {
                k: round(result[f"{label}_{big}"]["profile_s"][k]
                         - result[f"{label}_{small}"]["profile_s"][k], 3)
                for k in STAGES
            }
            for label in ("with_explain", "without_explain")
        }  # fmt: skip
        result["bare_cpu_us_per_patient_one_thread"] = bare_cpu
        cpu_added = {  # CPU of the patients added, workers and the job's own process
            label: (result[f"{label}_{big}"]["profile_s"]["cpu_s"]
                    + result[f"{label}_{big}"]["profile_s"]["main_cpu_s"]
                    - result[f"{label}_{small}"]["profile_s"]["cpu_s"]
                    - result[f"{label}_{small}"]["profile_s"]["main_cpu_s"]) * 1e6 / (n_big - n_small)
            for label in ("with_explain", "without_explain")
        }  # fmt: skip
        result["marginal_cpu_us_per_patient"] = {k: round(v, 3) for k, v in cpu_added.items()}
        workers = result[f"without_explain_{big}"]["workers"]
        result["cpu_ratios"] = {  # None: the CLI measured reports no CPU (an older version)
            f"marginal_{label}_vs_one_thread_{call}": round(
                workers * bare_cpu[call] / cpu_added[label], 3
            ) if cpu_added[label] > 0 else None
            for label, call in (("without_explain", "predict"), ("with_explain", "pred_contrib"))
        }  # fmt: skip
        result["ratios"] = {
            "with_explain_vs_pred_contrib": round(
                w["patients_per_second"] / bare["pred_contrib"], 3
            ),
            "without_explain_vs_predict": round(wo["patients_per_second"] / bare["predict"], 3),
            "marginal_with_explain_vs_pred_contrib": round(
                result["marginal_patients_per_second"]["with_explain"] / bare["pred_contrib"], 3
            ),
            "marginal_without_explain_vs_predict": round(
                result["marginal_patients_per_second"]["without_explain"] / bare["predict"], 3
            ),
            "peak_4m_vs_1m": round(
                result[f"without_explain_{big}"]["peak_rss_mb"] / wo["peak_rss_mb"], 3
            ),
            "peak_4m_vs_1m_with_explain": round(
                result[f"with_explain_{big}"]["peak_rss_mb"] / w["peak_rss_mb"], 3
            ),
        }
        marginal = result["marginal_patients_per_second"]
        result["ratios_vs_one_thread"] = {
            "with_explain_vs_pred_contrib": round(
                w["patients_per_second"] / bare_1["pred_contrib"], 3
            ),
            "without_explain_vs_predict": round(wo["patients_per_second"] / bare_1["predict"], 3),
            "marginal_with_explain_vs_pred_contrib": round(
                marginal["with_explain"] / bare_1["pred_contrib"], 3
            ),
            "marginal_without_explain_vs_predict": round(
                marginal["without_explain"] / bare_1["predict"], 3
            ),
        }
        result["targets"] = {
            "with_explain_vs_pred_contrib": ">= 0.6", "with_explain_1m_seconds": "< 120",
            "peak_1m_mb": "< 2048", "peak_4m_vs_1m": "<= 1.2",
            "marginal_without_explain_vs_one_thread_predict": ">= 0.4",
            "marginal_with_explain_vs_pred_contrib": ">= 0.8",
        }  # fmt: skip
        result["meets"] = {
            "with_explain_vs_pred_contrib": result["ratios"]["with_explain_vs_pred_contrib"] >= 0.6,
            "with_explain_1m_seconds": w["wall_s"] < 120 if n_small == N else None,
            "peak_1m_mb": max(w["peak_rss_mb"], wo["peak_rss_mb"]) < 2048 if n_small == N else None,
            "peak_4m_vs_1m": result["ratios"]["peak_4m_vs_1m"] <= 1.2,
            "marginal_without_explain_vs_one_thread_predict": result["ratios_vs_one_thread"][
                "marginal_without_explain_vs_predict"] >= 0.4,
            "marginal_with_explain_vs_pred_contrib": result["ratios"][
                "marginal_with_explain_vs_pred_contrib"] >= 0.8,
        }  # fmt: skip
        write_result("score", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
