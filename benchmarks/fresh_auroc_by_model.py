"""Which primary predicts fresh patients best: each model refit on a SIMULATED trial, judged on 20,000.

The honest-validation benchmark asks whether the validated AUROC tells the truth about the
primary; this one asks which primary is better, paired: for each of ``--trials`` simulated
trials of the default layout (seeds ``--first-seed`` on, as the honest-validation benchmark
uses), every model below is refit on the trial (as ``train`` refits the primary) and scored
on one shared fresh cohort of 20,000 simulated patients (seed 303, as there). Reported: mean
fresh AUROC of each model and the mean paired difference of each candidate minus the
baseline-score model and minus ``logistic_l2``, with Monte Carlo standard errors.
No validation is run, so a trial costs a few fits, not hundreds.

Run: ``python -m benchmarks.fresh_auroc_by_model [--trials 100] [--first-seed 1000]
[--patients N]``; the result goes to ``benchmarks/results/fresh_auroc_by_model.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from msc_response.config import config_from_dict
from msc_response.errors import MscResponseWarning
from msc_response.features import build_features
from msc_response.modeling import metrics
from msc_response.modeling.fit import refit
from msc_response.modeling.models import model_specs, screen_columns
from msc_response.simulator import write_simulation as simulate

from ._common import write_result

MODELS = ("logistic_l2", "logistic_rcs", "lightgbm")
FRESH_N = 20_000


def make_config():
    model = {"candidates": list(MODELS), "primary": "logistic_rcs"}
    return config_from_dict({"name": "fresh", "endpoint": {"score": "child_pugh"}, "model": model})


def one_trial(seed: int, work: Path, fresh, n_patients: int | None) -> dict:
    d = work / f"trial_{seed}"
    simulate(d, design="trial", seed=seed, n_patients=n_patients, h5ad_patients=0)
    config = make_config()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MscResponseWarning)
        features = build_features(config, d)
    shutil.rmtree(d, ignore_errors=True)
    kept, _ = screen_columns(features.table[features.feature_columns].astype(float))  # as fit
    X, y = features.table[kept].astype(float), features.table["response"].to_numpy(dtype=int)
    y_fresh = fresh["response"].to_numpy(dtype=int)
    row = {"seed": seed, "n": len(y), "events": int(y.sum())}
    for spec in model_specs(config, kept):
        if spec.role == "candidate" or spec.name == "baseline_score":
            p = refit(spec, X, y, config=config).predict_proba(fresh)
            row[spec.name] = metrics.roc_auc(y_fresh, p)
    return row


def mean_se(x) -> list[float]:
    x = np.asarray(x, dtype=float)
    return [round(float(x.mean()), 4), round(float(x.std(ddof=1) / np.sqrt(len(x))), 4)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--patients", type=int, default=None, help="trial size (default: the layout's)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_fresh_"))
    try:
        simulate(work / "fresh", design="trial", n_patients=FRESH_N, seed=303, fmt="parquet", h5ad_patients=0)  # fmt: skip
        fresh = build_features(make_config(), work / "fresh").table
        rows = Parallel(n_jobs=args.jobs)(
            delayed(one_trial)(args.first_seed + k, work, fresh, args.patients)
            for k in range(args.trials)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = [m for m in (*MODELS, "baseline_score") if all(m in r for r in rows)]
    auc = {m: np.array([r[m] for r in rows]) for m in names}
    out = {"trials": len(rows), "n": rows[0]["n"], "mean_events": round(float(np.mean([r["events"] for r in rows])), 2),
           "mean_fresh_roc_auc": {m: mean_se(a) for m, a in auc.items()},
           "minus_baseline_score": {m: mean_se(auc[m] - auc["baseline_score"]) for m in MODELS},
           "minus_logistic_l2": {m: mean_se(auc[m] - auc["logistic_l2"]) for m in MODELS if m != "logistic_l2"},
           "first_seed": args.first_seed, "rows": rows}  # fmt: skip
    write_result("fresh_auroc_by_model" + (f"_n{args.patients}" if args.patients else ""), out)
    for m in names:
        print(f"{m:<16} fresh AUROC {out['mean_fresh_roc_auc'][m][0]:.3f} (MCSE "
              f"{out['mean_fresh_roc_auc'][m][1]:.3f})", file=sys.stderr)  # fmt: skip
    for m, (d, se) in out["minus_baseline_score"].items():
        print(f"{m} - baseline_score {d:+.3f} (MCSE {se:.3f})", file=sys.stderr)
    for m, (d, se) in out["minus_logistic_l2"].items():
        print(f"{m} - logistic_l2 {d:+.3f} (MCSE {se:.3f})", file=sys.stderr)


if __name__ == "__main__":
    main()
