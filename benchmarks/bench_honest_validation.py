"""Proof that the validation tells the truth, on SIMULATED cohorts with known truth.

1. Trials of the default layout (``--trials``, at least 200 for the acceptance): each is
   run through :func:`msc_response.modeling.fit.fit` exactly as ``train`` runs it; the
   validated AUROC (.632+) and its 95% interval are compared with the AUROC the refit
   primary model reaches on one shared fresh cohort of 20,000 simulated patients.
   Acceptance: mean (validated - fresh) within +/- 0.02 and coverage of the interval
   >= 0.93, each printed with its Monte Carlo standard error; no calibration slope with
   |slope| > 10 anywhere in the summaries. Also shown: the exploratory LightGBM, the
   apparent and Harrell-corrected AUROCs, the cross-validated (pooled) AUROC, and the
   coverage and bias of every other validated metric's interval (Brier, scaled Brier,
   calibration intercept and slope, ICI, E50, E90, net benefit at the config's thresholds;
   since issue 21 each on the scale that keeps it inside its range), and of the operating
   point at the config's threshold: sensitivity, specificity, PPV and NPV of the
   out-of-fold predictions (mean over repeats) with exact intervals, against the refit
   model's on the fresh cohort (``op_*``).
2. A 2,000-patient screening cohort: fresh AUROC of each candidate against the oracle.

Run: ``python -m benchmarks.bench_honest_validation [--trials 200] [--bootstrap 100]
[--repeats 5] [--jobs 2] [--rows-file rows.jsonl] [--primary logistic_rcs]``; the result goes to
``benchmarks/results/honest_validation.json``. With ``--rows-file`` each trial's row is
appended as it finishes; ``--summarise-rows rows.jsonl`` makes the result of the trials of
one or more (stopped) runs.
Bootstrap replicates and repeats are fewer than ``train`` uses at trial size (200 and 10):
they set the Monte Carlo precision of each trial's numbers, not their expectation.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from msc_response.config import config_from_dict
from msc_response.errors import MscResponseWarning
from msc_response.features import build_features
from msc_response.modeling import metrics
from msc_response.modeling.fit import fit, refit
from msc_response.reporting.operating_point import operating_point
from msc_response.simulator import write_simulation as simulate

from ._common import append_row, read_rows, write_result

ENDPOINT = {"score": "child_pugh"}
FRESH_N = 20_000


#: The primary model under test (``--primary``; default: the config's default primary).
PRIMARY: list[str | None] = [None]


def make_config(repeats: int, n_boot: int, seed: int, n_jobs: int = 1):
    model = {"repeats": repeats, "bootstrap": n_boot, "seed": seed, "n_jobs": n_jobs}
    if PRIMARY[0] is not None:  # that primary beside the exploratory LightGBM
        model.update(primary=PRIMARY[0], candidates=sorted({"lightgbm", PRIMARY[0]}))
    return config_from_dict({"name": "bench", "endpoint": ENDPOINT, "model": model})


def fresh_table(config, directory: Path) -> pd.DataFrame:
    return build_features(config, directory).table


def quiet_fit(config, features):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MscResponseWarning)
        result = fit(config, features, simulated=True)
    return result, [str(w.message) for w in caught if issubclass(w.category, MscResponseWarning)]


def slopes(result) -> tuple[float, float]:
    """Largest |calibration slope| estimate and interval bound of every model in the summary."""
    est, bound = 0.0, 0.0
    for m in result.summary()["models"].values():
        for key in ("validated_calibration_slope", "optimism_corrected_calibration_slope"):
            v = m.get(key)
            if isinstance(v, float):
                est = max(est, abs(v))
        for v in m["validated_calibration_slope_ci"]:
            if v is not None:
                bound = max(bound, abs(v))
    return est, bound


def one_trial(
    k: int, seed: int, work: Path, fresh: pd.DataFrame, repeats: int, n_boot: int, primary=None
) -> dict:
    PRIMARY[0] = primary  # joblib workers are other processes: the choice travels with the call
    d = work / f"trial_{k}"
    simulate(d, design="trial", seed=seed, h5ad_patients=0)
    config = make_config(repeats, n_boot, seed)
    result, notes = quiet_fit(config, build_features(config, d))
    shutil.rmtree(d, ignore_errors=True)
    y_fresh = fresh["response"].to_numpy(dtype=int)
    row = {"seed": seed, "n": len(result.y), "events": int(result.y.sum()), "warnings": len(notes)}
    for name, mv in result.models.items():
        if mv.spec.role != "candidate":
            continue
        fitted = (
            result.fitted
            if name == config.model.primary
            else refit(mv.spec, result.X, result.y, config=config)
        )
        p = fitted.predict_proba(fresh)
        fresh_values, _ = metrics.performance(y_fresh, p, config.model.net_benefit_thresholds)
        est, ci = mv.estimates(), mv.intervals()
        opt = mv.optimism
        row.update({
            f"{name}.validated": est[metrics.ROC_AUC], f"{name}.ci_low": ci[metrics.ROC_AUC][0],
            f"{name}.ci_high": ci[metrics.ROC_AUC][1], f"{name}.fresh": fresh_values[metrics.ROC_AUC],
            f"{name}.apparent": mv.bootstrap.apparent[metrics.ROC_AUC],
            f"{name}.harrell": np.nan if opt is None else opt.corrected[metrics.ROC_AUC],
            f"{name}.cv_pooled": float(np.mean([r[metrics.ROC_AUC] for r in mv.cv.per_repeat])),
        })  # fmt: skip
        for m in (m for m in est if m != metrics.ROC_AUC and m in fresh_values):
            row.update({f"{name}.{m}": est[m], f"{name}.{m}.ci_low": ci[m][0],
                        f"{name}.{m}.ci_high": ci[m][1], f"{name}.{m}.fresh": fresh_values[m]})  # fmt: skip
        threshold = config.model.threshold
        on_oof = operating_point(result.y, np.nanmean(mv.oof, axis=0), threshold).measures()
        on_fresh = operating_point(y_fresh, p, threshold).measures()
        for k, pr in on_oof.items():
            row.update({f"{name}.op_{k}": pr.estimate, f"{name}.op_{k}.ci_low": pr.low,
                        f"{name}.op_{k}.ci_high": pr.high, f"{name}.op_{k}.fresh": on_fresh[k].estimate})  # fmt: skip
    row["max_abs_slope"], row["max_abs_slope_ci_bound"] = slopes(result)
    return row


def mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def coverage(low, high, truth) -> tuple[float, float]:
    ok = ~(np.isnan(low) | np.isnan(high) | np.isnan(truth))
    c = ((low <= truth) & (truth <= high))[ok].astype(float)
    return float(c.mean()), float(np.sqrt(c.mean() * (1 - c.mean()) / len(c))), int(ok.sum())


def summarise(df: pd.DataFrame, model: str) -> dict:
    f = df[f"{model}.fresh"]
    bias, bias_se = mean_se(df[f"{model}.validated"] - f)
    cov, cov_se, _ = coverage(df[f"{model}.ci_low"], df[f"{model}.ci_high"], f)
    out = {
        "mean_fresh_roc_auc": round(float(f.mean()), 4),
        "bias_validated_minus_fresh": round(bias, 4), "bias_mcse": round(bias_se, 4),
        "coverage_95": round(cov, 4), "coverage_mcse": round(cov_se, 4),
        "mean_interval_width": round(float((df[f"{model}.ci_high"] - df[f"{model}.ci_low"]).mean()), 4),
        "rmse_validated_vs_fresh": round(float(np.sqrt(((df[f"{model}.validated"] - f) ** 2).mean())), 4),
    }  # fmt: skip
    for other in ("apparent", "harrell", "cv_pooled"):
        if df[f"{model}.{other}"].notna().any():
            b, s = mean_se(df[f"{model}.{other}"] - f)
            out[f"bias_{other}_minus_fresh"] = [round(b, 4), round(s, 4)]
        else:
            out[f"bias_{other}_minus_fresh"] = "not applicable"
    for m in (c.split(".")[1] for c in df.columns if c.startswith(f"{model}.") and c.endswith(".ci_low")
              and c.count(".") == 2):  # fmt: skip
        b, s = mean_se(df[f"{model}.{m}"] - df[f"{model}.{m}.fresh"])
        c, cs, used = coverage(
            df[f"{model}.{m}.ci_low"], df[f"{model}.{m}.ci_high"], df[f"{model}.{m}.fresh"]
        )
        out[m] = {"bias": [round(b, 4), round(s, 4)], "coverage_95": [round(c, 4), round(cs, 4)],
                  "trials_estimable": used}  # fmt: skip
    return out


def screening_part(work: Path, repeats: int, n_boot: int) -> dict:
    simulate(work / "screen", design="screening", n_patients=2000, seed=101, h5ad_patients=0)
    simulate(work / "fresh_screen", design="screening", n_patients=FRESH_N, seed=202, fmt="parquet", h5ad_patients=0)  # fmt: skip
    config = make_config(repeats, n_boot, 1, n_jobs=2)
    result, _ = quiet_fit(config, build_features(config, work / "screen"))
    fresh = fresh_table(config, work / "fresh_screen")
    y = fresh["response"].to_numpy(dtype=int)
    truth = pd.read_csv(work / "fresh_screen" / "truth.csv", dtype={"patient_id": str}).set_index(
        "patient_id"
    )
    oracle = metrics.roc_auc(
        y, truth.loc[fresh["patient_id"].astype(str), "p_child_pugh"].to_numpy()
    )
    out = {"oracle_roc_auc": round(oracle, 4)}
    for name, mv in result.models.items():
        if mv.spec.role == "candidate":
            fitted = refit(mv.spec, result.X, result.y, config=config)
            auc = metrics.roc_auc(y, fitted.predict_proba(fresh))
            out[name] = {"validated_roc_auc": round(mv.roc_auc, 4), "fresh_roc_auc": round(auc, 4),
                         "ratio_to_oracle": round(auc / oracle, 4)}  # fmt: skip
    return out


def trials_part(df: pd.DataFrame, args, trial_seconds: float) -> dict:
    """Bias, coverage and acceptance of the trials in ``df`` (one row per trial)."""
    models = sorted({c.split(".")[0] for c in df.columns if c.endswith(".validated")})
    part1 = {
        "trials": len(df), "bootstrap": args.bootstrap, "repeats": args.repeats,
        "primary_model": make_config(1, 1, 0).model.primary,
        "models": {m: summarise(df, m) for m in models},
        "max_abs_calibration_slope": round(float(df["max_abs_slope"].max()), 3),
        "max_abs_calibration_slope_ci_bound": round(float(df["max_abs_slope_ci_bound"].max()), 3),
        "mean_events": round(float(df["events"].mean()), 2), "n": int(df["n"].iloc[0]),
        "seconds": round(trial_seconds, 1),
    }  # fmt: skip
    primary = part1["models"][part1["primary_model"]]
    part1["acceptance"] = {
        "bias_within_0.02": abs(primary["bias_validated_minus_fresh"]) <= 0.02,
        "coverage_at_least_0.93": primary["coverage_95"] >= 0.93,
        "no_abs_slope_above_10": part1["max_abs_calibration_slope"] <= 10,
    }
    return part1


def print_primary(part1: dict, trials: int) -> None:
    primary = part1["models"][part1["primary_model"]]
    print(
        f"\nprimary {part1['primary_model']}, {trials} trials: bias (validated - fresh) "
        f"{primary['bias_validated_minus_fresh']:+.4f} (MCSE {primary['bias_mcse']:.4f}); "
        f"coverage {primary['coverage_95']:.3f} (MCSE {primary['coverage_mcse']:.3f}); "
        f"mean width {primary['mean_interval_width']:.3f}; max |slope| "
        f"{part1['max_abs_calibration_slope']}; {part1['seconds']} s",
        file=sys.stderr,
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument(
        "--seeds", help="comma-separated trial seeds instead of --trials from --first-seed"
    )
    ap.add_argument("--skip-screening", action="store_true")
    ap.add_argument(
        "--rows-file", help="append each trial's row (JSON lines) to this file as it finishes"
    )
    ap.add_argument(
        "--summarise-rows", help="no trials: the result of the rows in this JSON-lines file"
    )
    ap.add_argument("--primary", default=None, help="the primary model (default: the config's)")
    args = ap.parse_args(argv)
    PRIMARY[0] = args.primary
    if args.summarise_rows:
        rows = read_rows(args.summarise_rows)
        part1 = trials_part(pd.DataFrame(rows).sort_values("seed"), args, 0.0)
        write_result(
            "honest_validation",
            {"trials_of_default_layout": part1, "rows_file": args.summarise_rows},
        )
        print_primary(part1, args.trials if not rows else len(rows))
        return
    work = Path(tempfile.mkdtemp(prefix="bench_honest_"))
    t0 = time.perf_counter()
    try:
        simulate(work / "fresh_trial", design="trial", n_patients=FRESH_N, seed=303, fmt="parquet", h5ad_patients=0)  # fmt: skip
        fresh = fresh_table(make_config(args.repeats, args.bootstrap, 0), work / "fresh_trial")
        rows = []
        # each trial's row is appended as it finishes, so that a run stopped early (a shared
        # machine) still leaves its trials: --summarise-rows makes the result from them
        seeds = (
            [int(s) for s in args.seeds.split(",")]
            if args.seeds
            else [args.first_seed + k for k in range(args.trials)]
        )
        for row in Parallel(n_jobs=args.jobs, verbose=0, return_as="generator_unordered")(
            delayed(one_trial)(k, seed, work, fresh, args.repeats, args.bootstrap, args.primary)
            for k, seed in enumerate(seeds)
        ):
            rows.append(row)
            append_row(args.rows_file, row)
        rows.sort(key=lambda r: r["seed"])
        trial_seconds = time.perf_counter() - t0
        part1 = trials_part(pd.DataFrame(rows), args, trial_seconds)
        result = {"trials_of_default_layout": part1}
        if not args.skip_screening:
            result["screening_2000"] = screening_part(work, args.repeats, args.bootstrap)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        name = "honest_validation" if args.primary is None else f"honest_validation_{args.primary}"
        write_result(name, result)
        print_primary(part1, len(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
