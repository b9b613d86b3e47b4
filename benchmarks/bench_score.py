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
fixed start-up alone takes about that.)
"""

from __future__ import annotations

import json
import shutil
import time

from _common import CLI, private_store, run_measured, write_result

N, N_BIG = 1_000_000, 4_000_000
REPEATS = 2


def main() -> None:
    work = private_store("bench_score_")
    from msc_response import tracking
    from msc_response.config import config_from_dict
    from msc_response.features import build_features
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
        result = {"model": summary["primary_model"], "patients": N}
        for n, name in ((N, "1m"), (N_BIG, "4m")):
            simulate(work / name, design="screening", n_patients=n, seed=12, fmt="parquet",
                     baseline_only=True, h5ad_patients=0)  # fmt: skip
        # this machine's speed drifts by +/-10% between runs: every job and every bare call
        # is the best of REPEATS (the marginal throughput takes the difference of two)
        for label, extra, data, repeats in (("with_explain_1m", ["--explain", "3"], "1m", REPEATS),
                                            ("without_explain_1m", [], "1m", REPEATS),
                                            ("with_explain_4m", ["--explain", "3"], "4m", REPEATS),
                                            ("without_explain_4m", [], "4m", REPEATS)):  # fmt: skip
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
                info = run_measured(cmd)
                summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
                info["job_timings_s"] = summary["timings"]  # per stage, summed over workers
                info["workers"] = summary["workers"]
                info["input_grouped_by_patient"] = summary["input_grouped_by_patient"]
                runs.append(info)
            info = min(runs, key=lambda r: r["wall_s"])
            info["all_wall_s"] = [r["wall_s"] for r in runs]
            info["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            n = N if data == "1m" else N_BIG
            info["patients_per_second"] = round(n / info["wall_s"])
            result[label] = info
            out.unlink()
        model = load_model(uri)
        fs = build_features(config_from_dict(model.spec["config"]), work / "1m", labels=False)
        X = fs.table[model.spec["feature_columns"]].astype(float).to_numpy()
        booster = model.fitted.estimator
        bare, bare_1 = {}, {}
        for key, kwargs in (("predict", {}), ("pred_contrib", {"pred_contrib": True})):
            for store, threads in ((bare, 0), (bare_1, 1)):  # 0: LightGBM's default, all cores
                best = float("inf")
                for _ in range(REPEATS):
                    start = time.perf_counter()
                    booster.predict(X, num_threads=threads, **kwargs)
                    best = min(best, time.perf_counter() - start)
                store[key] = round(N / best)
        result["bare_patients_per_second"] = bare
        result["bare_patients_per_second_one_thread"] = bare_1
        w, wo = result["with_explain_1m"], result["without_explain_1m"]
        result["marginal_patients_per_second"] = {  # the 3M patients added over the time they added
            label: round(
                (N_BIG - N) / (result[f"{label}_4m"]["wall_s"] - result[f"{label}_1m"]["wall_s"])
            )
            for label in ("with_explain", "without_explain")
        }
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
                result["without_explain_4m"]["peak_rss_mb"] / wo["peak_rss_mb"], 3
            ),
        }
        result["ratios_vs_one_thread"] = {
            "with_explain_vs_pred_contrib": round(
                w["patients_per_second"] / bare_1["pred_contrib"], 3
            ),
            "without_explain_vs_predict": round(wo["patients_per_second"] / bare_1["predict"], 3),
        }
        result["targets"] = {
            "with_explain_vs_pred_contrib": ">= 0.6", "with_explain_1m_seconds": "< 120",
            "peak_1m_mb": "< 2048", "peak_4m_vs_1m": "<= 1.2",
        }  # fmt: skip
        result["meets"] = {
            "with_explain_vs_pred_contrib": result["ratios"]["with_explain_vs_pred_contrib"] >= 0.6,
            "with_explain_1m_seconds": w["wall_s"] < 120,
            "peak_1m_mb": max(w["peak_rss_mb"], wo["peak_rss_mb"]) < 2048,
            "peak_4m_vs_1m": result["ratios"]["peak_4m_vs_1m"] <= 1.2,
        }
        write_result("score", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
