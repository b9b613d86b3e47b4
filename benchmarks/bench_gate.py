"""The promotion gate against simulated truth: false promotions under the null, and power.

Null cohorts: a SIMULATED study whose labels are permuted within strata of the baseline
score (the endpoint's own baseline value), so the labels carry no information beyond it:
no model can truly beat the baseline-score model.

1. ``--trials`` (>= 200) null trials of the default trial layout: how often the paired
   rule alone (lower 95% bound of the AUROC difference primary - best baseline above 0;
   Riley's rule set aside) would promote. Acceptance: <= 5%, printed with its Monte
   Carlo standard error. For comparison, the same rule with an interval from resampling
   patients over fixed cross-validated predictions (the literal "paired bootstrap on
   identical CV splits", which ignores refitting).
2. ``--big-null`` null cohorts of 3,000: nothing is promoted (the whole gate, Riley's
   rule included; n = 3,000 is above Riley's minimum).
3. One cohort of 3,000 with the simulator's real signal, where the primary model truly
   beats the baseline on a fresh 20,000-patient cohort: it is promoted.

Only the primary model and the baselines are validated (``candidates: [<primary>]``):
the other candidates play no part in the gate.
Run: ``python -m benchmarks.bench_gate [--trials 200] [--bootstrap 100] [--repeats 5]
[--primary logistic_rcs] [--rows-file rows.jsonl] [--first-seed 5000]``. With ``--rows-file``
each null trial's row (and each cohort of 3,000's) is appended as it finishes;
``--summarise-rows rows.jsonl`` makes the null-trial part of the result from the trials of one
or more (stopped) runs. ``--first-seed`` continues a stopped run (trial k has seed
first-seed + k, so the rows of two runs are the trials of one); ``--trials 0`` runs only the
cohorts of 3,000 (``--first-big-seed``, ``--skip-signal`` to continue those).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from msc_response.config import config_from_dict
from msc_response.errors import MscResponseWarning
from msc_response.features import build_features
from msc_response.modeling import gate, metrics, validation
from msc_response.modeling.fit import fit, refit
from msc_response.simulator import write_simulation as simulate

from ._common import append_row, read_rows, write_result

SCORE = "child_pugh"


#: The primary model under test (``--primary``; default: the config's default primary).
PRIMARY: list[str | None] = [None]


def make_config(repeats: int, n_boot: int, seed: int, n_jobs: int = 1):
    primary = PRIMARY[0] or config_from_dict({"name": "gate"}).model.primary
    model = {"candidates": [primary], "primary": primary, "repeats": repeats, "bootstrap": n_boot, "seed": seed,
             "n_jobs": n_jobs}  # fmt: skip
    return config_from_dict({"name": "gate", "endpoint": {"score": SCORE}, "model": model})


def null_features(features, seed: int):
    """The features with ``response`` permuted within strata of the baseline score."""
    table = features.table.copy()
    rng = np.random.default_rng(seed)
    for _, rows in table.groupby(f"baseline_{SCORE}").groups.items():
        idx = np.asarray(rows)
        table.loc[idx, "response"] = rng.permutation(table.loc[idx, "response"].to_numpy())
    return SimpleNamespace(table=table, feature_columns=features.feature_columns,
                           flow=features.flow, lab_units=features.lab_units)  # fmt: skip


def quiet_fit(config, features):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MscResponseWarning)
        return fit(config, features, simulated=True)


def fixed_oof_rule(result, n_resamples: int = 1000) -> bool:
    """The paired rule with a bootstrap over patients of the fixed cross-validated predictions."""
    cmp = result.baseline_comparison
    a, b = result.models[cmp.model].oof, result.models[cmp.reference].oof
    y = result.y
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_resamples):
        idx = validation.stratified_resample(rng, y)
        yy = np.broadcast_to(y[idx], a.shape)
        diffs.append(
            np.nanmean(metrics.roc_auc_rows(yy, a[:, idx]) - metrics.roc_auc_rows(yy, b[:, idx]))
        )
    return bool(np.percentile(diffs, 2.5) > 0)


def null_trial(seed: int, work: Path, repeats: int, n_boot: int, primary=None) -> dict:
    PRIMARY[0] = primary  # joblib workers are other processes: the choice travels with the call
    d = work / f"null_{seed}"
    simulate(d, design="trial", seed=seed, h5ad_patients=0)
    config = make_config(repeats, n_boot, seed)
    result = quiet_fit(config, null_features(build_features(config, d), seed))
    shutil.rmtree(d, ignore_errors=True)
    cmp = result.baseline_comparison
    return {"seed": seed, "promoted": cmp.passed, "difference": cmp.difference.estimate,
            "ci_low": cmp.difference.ci[0], "fixed_oof_promoted": fixed_oof_rule(result)}  # fmt: skip


def big_cohort(seed: int, work: Path, repeats: int, n_boot: int, null: bool, fresh=None) -> dict:
    d = work / f"big_{seed}"
    simulate(d, design="trial", n_patients=3000, seed=seed, fmt="parquet", h5ad_patients=0)
    config = make_config(repeats, n_boot, seed, n_jobs=2)
    features = build_features(config, d)
    result = quiet_fit(config, null_features(features, seed) if null else features)
    shutil.rmtree(d, ignore_errors=True)
    cmp = result.baseline_comparison
    decision = gate.decide(
        n=len(result.y), riley_min_n=result.riley["min_n"], baseline=cmp, champion=None
    )
    out = {"seed": seed, "null": null, "n": len(result.y), "riley_min_n": result.riley["min_n"],
           "comparison": cmp.to_dict(), "decision": decision.reason, "promoted": decision.promoted}  # fmt: skip
    if fresh is not None:
        y = fresh["response"].to_numpy(dtype=int)
        for name in (cmp.model, cmp.reference):
            mv = result.models[name]
            fitted = refit(mv.spec, result.X, result.y, config=config)
            out[f"fresh_roc_auc.{name}"] = round(metrics.roc_auc(y, fitted.predict_proba(fresh)), 4)
    return out


def plain(row: dict) -> dict:
    """``row`` with NumPy scalars as Python numbers (a JSON line)."""
    return json.loads(json.dumps(row, default=lambda v: v.item()))


def rate(flags) -> dict:
    flags = np.asarray(flags, dtype=float)
    p, n = float(flags.mean()), len(flags)
    return {"rate": round(p, 4), "mcse": round(float(np.sqrt(p * (1 - p) / n)), 4), "trials": n,
            "upper_95_if_zero": round(3 / n, 4)}  # fmt: skip


def null_part(df: pd.DataFrame, seconds: float) -> dict:
    """False promotion over the null trials in ``df`` (one row per trial)."""
    return {"paired_rule": rate(df["promoted"]),
            "fixed_oof_paired_bootstrap": rate(df["fixed_oof_promoted"]),
            "mean_difference": round(float(df["difference"].mean()), 4),
            "seconds": round(seconds, 1)}  # fmt: skip


def result_name(primary: str | None) -> str:
    return "gate" if primary is None else f"gate_{primary}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--big-null", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--primary", default=None, help="the primary model (default: the config's)")
    ap.add_argument("--rows-file", help="append each null trial's row (JSON lines) as it finishes")
    ap.add_argument("--summarise-rows", help="no trials: the null-trial result of these rows")
    ap.add_argument("--first-seed", type=int, default=5000, help="seed of the first null trial")
    ap.add_argument("--first-big-seed", type=int, default=7000, help="seed of the first null 3,000")
    ap.add_argument("--skip-signal", action="store_true", help="no signal cohort of 3,000")
    args = ap.parse_args(argv)
    PRIMARY[0] = args.primary
    if args.summarise_rows:
        rows = [r for r in read_rows(args.summarise_rows) if "n" not in r]  # not the 3,000s
        part = null_part(pd.DataFrame(rows).drop_duplicates("seed"), 0.0)
        write_result(result_name(args.primary), {"null_trials": part, "rows_file": args.summarise_rows,
                                                 "primary": make_config(1, 1, 0).model.primary})  # fmt: skip
        fpr = part["paired_rule"]
        print(f"false promotion {fpr['rate']:.3f} (MCSE {fpr['mcse']:.3f}) over {fpr['trials']} "
              f"null trials", file=sys.stderr)  # fmt: skip
        return
    work = Path(tempfile.mkdtemp(prefix="bench_gate_"))
    t0 = time.perf_counter()
    try:
        rows = []
        for row in Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
            delayed(null_trial)(
                args.first_seed + k, work, args.repeats, args.bootstrap, args.primary
            )
            for k in range(args.trials)
        ):
            rows.append(row)
            append_row(args.rows_file, row)
        trial_s = time.perf_counter() - t0
        big = []
        for k in range(args.big_null):
            big.append(big_cohort(args.first_big_seed + k, work, 2, args.bootstrap, null=True))
            append_row(args.rows_file, plain(big[-1]))
        alt = {"promoted": None}
        if not args.skip_signal:
            simulate(work / "fresh", design="trial", n_patients=20_000, seed=303, fmt="parquet", h5ad_patients=0)  # fmt: skip
            fresh = build_features(make_config(2, 10, 0), work / "fresh").table
            alt = big_cohort(9000, work, 2, args.bootstrap, null=False, fresh=fresh)
            append_row(args.rows_file, plain(alt))
        result = {
            "null_trials": null_part(pd.DataFrame(rows).sort_values("seed"), trial_s) if rows else None,
            "null_cohorts_3000": {"promoted": int(sum(b["promoted"] for b in big)), "cohorts": big},
            "signal_cohort_3000": alt,
            "settings": {"bootstrap": args.bootstrap, "repeats": args.repeats,
                         "primary": make_config(1, 1, 0).model.primary},
            "seconds": round(time.perf_counter() - t0, 1),
        }  # fmt: skip
        fpr = result["null_trials"]["paired_rule"] if rows else {"rate": float("nan"), "mcse": float("nan"), "trials": 0}  # fmt: skip
        result["acceptance"] = {
            "null_trial_promotion_at_most_0.05": fpr["rate"] <= 0.05 if rows else None,
            "no_null_3000_promoted": result["null_cohorts_3000"]["promoted"] == 0,
            "signal_3000_promoted": alt["promoted"],
        }
        write_result(result_name(args.primary), result)
        print(f"\nfalse promotion {fpr['rate']:.3f} (MCSE {fpr['mcse']:.3f}) over {fpr['trials']} null trials; "
              f"null 3,000: {result['null_cohorts_3000']['promoted']} of {args.big_null} promoted; "
              f"signal 3,000 promoted: {alt['promoted']}", file=sys.stderr)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
