"""How the headline AUROC and its interval were chosen: candidate methods against fresh truth.

Not part of ``make bench`` (about 30 minutes for 200 trials on 2 cores); the README's table
"Choosing the method" comes from ``python -m benchmarks.compare_interval_methods 200``.
For each SIMULATED trial of the default layout and each candidate model: the AUROC of the
model refit on all patients on one fresh 20,000-patient cohort, and these estimates with
their 95% intervals:

* ``cv_pool``: 10 x 5-fold CV, AUROC per repeat (pooled folds), mean over repeats;
  ``naive``: bootstrap of patients over the fixed out-of-fold predictions (the old interval);
* ``cv_fold``: mean of the per-fold AUROCs; ``nb``: Nadeau & Bengio's corrected
  repeated-CV variance (Mach Learn 2003; Bouckaert & Frank 2004);
* ``boot_cv``: SD of a bootstrap of the whole CV procedure (duplicated patients kept in one
  fold, StratifiedGroupKFold);
* ``p632plus``: the .632+ bootstrap; ``oob``: SD of the out-of-bag AUROCs;
* ``harrell``: Harrell's optimism-corrected AUROC; ``apparent``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedGroupKFold

from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling.metrics import roc_auc, roc_auc_rows
from msc_response.modeling.models import make_estimator, model_specs, screen_columns
from msc_response.modeling.validation import auc_632plus
from msc_response.simulator import write_simulation as simulate

from ._common import write_result

CFG = config_from_dict({"name": "compare"})
MODELS = ("logistic_l2", "lightgbm")
Z = 1.96


def fitpred(spec, seed, nmin, Xtr, ytr, Xtes):
    e = make_estimator(spec, CFG, seed, nmin)
    e.fit(Xtr, ytr)
    return [e.predict_proba(x)[:, 1] for x in Xtes]


def one_trial(k: int, work: Path, fresh: pd.DataFrame, n_boot: int) -> list[dict]:
    warnings.simplefilter("ignore")
    d = work / f"trial_{k}"
    simulate(d, design="trial", seed=1000 + k, h5ad_patients=0)
    fs = build_features(CFG, d)
    shutil.rmtree(d, ignore_errors=True)
    cols, _ = screen_columns(fs.table[fs.feature_columns].astype(float))
    y = fs.table["response"].to_numpy(int)
    n, nmin = len(y), int(min(y.sum(), len(y) - y.sum()))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = []
    for spec in model_specs(CFG, cols):
        if spec.name not in MODELS:
            continue
        X = fs.table[list(spec.features)].to_numpy(float)
        rng = np.random.default_rng(k)
        (p_app, p_fresh) = fitpred(
            spec, k, nmin, X, y, [X, fresh[list(spec.features)].to_numpy(float)]
        )
        row = {"trial": k, "model": spec.name, "fresh": roc_auc(fresh["response"].to_numpy(int), p_fresh),
               "apparent": roc_auc(y, p_app)}  # fmt: skip
        R, K = 10, min(5, nmin)
        oof, fold_auc = np.full((R, n), np.nan), []
        splits = RepeatedStratifiedKFold(n_splits=K, n_repeats=R, random_state=k).split(X, y)
        for i, (tr, te) in enumerate(splits):
            (p,) = fitpred(spec, k + i, nmin, X[tr], y[tr], [X[te]])
            oof[i // K, te] = p
            fold_auc.append(roc_auc(y[te], p))
        row["cv_pool"] = float(roc_auc_rows(np.broadcast_to(y, (R, n)), oof).mean())
        fa = np.array(fold_auc)
        row["cv_fold"] = float(np.nanmean(fa))
        row["nb_se"] = float(np.sqrt((1 / len(fa) + 1 / (K - 1)) * np.nanvar(fa, ddof=1)))
        naive = []
        for _ in range(1000):
            idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            naive.append(np.nanmean(roc_auc_rows(np.broadcast_to(y[idx], (R, n)), oof[:, idx])))
        row["naive_lo"], row["naive_hi"] = np.percentile(naive, [2.5, 97.5])
        boot_cv, oob, harrell = [], [], []
        for b in range(n_boot):
            idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            yb, Xb = y[idx], X[idx]
            o = np.full(len(idx), np.nan)
            folds = StratifiedGroupKFold(n_splits=K, shuffle=True, random_state=k * 1000 + b)
            for j, (tr, te) in enumerate(folds.split(Xb, yb, groups=idx)):
                (p,) = fitpred(spec, k + 100 + j, nmin, Xb[tr], yb[tr], [Xb[te]])
                o[te] = p
            boot_cv.append(roc_auc(yb, o))
            mask = np.ones(n, bool)
            mask[idx] = False
            (pD,) = fitpred(spec, k + 7 + b, nmin, Xb, yb, [X])
            harrell.append(roc_auc(yb, pD[idx]) - roc_auc(y, pD))
            oob.append(roc_auc(y[mask], pD[mask]))
        row["boot_cv_sd"] = float(np.nanstd(boot_cv, ddof=1))
        row["oob_sd"] = float(np.nanstd(oob, ddof=1))
        row["harrell"] = row["apparent"] - float(np.mean(harrell))
        row["p632plus"] = auc_632plus(row["apparent"], float(np.nanmean(oob)))[0]
        out.append(row)
    return out


def summary(df: pd.DataFrame) -> dict:
    result = {}
    for model, d in df.groupby("model"):
        f, t = d["fresh"], len(d)
        entry = {"trials": t, "mean_fresh": round(float(f.mean()), 4), "bias": {}, "coverage": {}}
        for est in ("cv_pool", "cv_fold", "p632plus", "harrell", "apparent"):
            e = d[est] - f
            entry["bias"][est] = [
                round(float(e.mean()), 4),
                round(float(e.std(ddof=1) / np.sqrt(t)), 4),
            ]
        intervals = {
            "cv_pool, naive fixed-OOF bootstrap": (d["naive_lo"], d["naive_hi"]),
            "cv_fold +- z Nadeau-Bengio": (d["cv_fold"] - Z * d["nb_se"], d["cv_fold"] + Z * d["nb_se"]),
            "cv_pool +- z SD(bootstrap of CV)": (d["cv_pool"] - Z * d["boot_cv_sd"], d["cv_pool"] + Z * d["boot_cv_sd"]),
            ".632+ +- z SD(OOB AUROC)": (d["p632plus"] - Z * d["oob_sd"], d["p632plus"] + Z * d["oob_sd"]),
        }  # fmt: skip
        for name, (lo, hi) in intervals.items():
            c = ((lo <= f) & (f <= hi)).astype(float)
            entry["coverage"][name] = {"coverage": round(float(c.mean()), 4),
                                       "mcse": round(float(c.std(ddof=1) / np.sqrt(t)), 4),
                                       "mean_width": round(float((hi - lo).mean()), 4)}  # fmt: skip
        result[model] = entry
    return result


def main(n_trials: int = 200, n_boot: int = 50) -> None:
    work = Path(tempfile.mkdtemp(prefix="compare_intervals_"))
    try:
        simulate(work / "fresh", design="trial", n_patients=20_000, seed=303, fmt="parquet", h5ad_patients=0)  # fmt: skip
        fresh = build_features(CFG, work / "fresh").table
        rows = Parallel(n_jobs=2)(
            delayed(one_trial)(k, work, fresh, n_boot) for k in range(n_trials)
        )
        df = pd.DataFrame([r for rr in rows for r in rr])
        write_result("interval_methods", {"bootstrap": n_boot, "models": summary(df)})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
