"""Curves of model performance as numbers (drawn by :mod:`msc_response.plotting`).

Each ``*_curve`` function returns numbers (a DataFrame); the ``plot_*`` functions of
:mod:`msc_response.plotting` draw them.

Cross-validated curves are averages over the repeats of the cross-validation, so that a
curve and the number printed on it are the same estimate:

* ROC: curves averaged vertically (:func:`mean_roc_curve`), so that the area of the
  drawn curve is exactly the number on its label: the mean per-repeat AUROC for the
  cross-validated curve, the .632+ AUROC for the .632+ curve (the apparent curve and
  the out-of-bag curves with the .632+ weights).
* Calibration: each repeat's smoothed calibration curve
  (:func:`~msc_response.modeling.calibration.smooth_calibration`) averaged on a common
  grid; ICI, E50, E90 are the means of the per-repeat values.
* Decision curve (Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-74): the mean of the
  per-repeat net benefits at each threshold (net benefit is an average over patients).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .calibration import smooth_calibration

#: Threshold probabilities of the decision curve.
DECISION_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _rows(oof) -> np.ndarray:
    oof = np.asarray(oof, dtype=float)
    return oof[None, :] if oof.ndim == 1 else oof


def roc_curve(y, oof) -> pd.DataFrame:
    """Vertically averaged ROC curve of the repeats (rows of ``oof``; one row is fine).

    Columns ``fpr``, ``tpr``; its trapezoid area is exactly the mean per-repeat AUROC.
    """
    return mean_roc_curve([(y, p) for p in _rows(oof)])


def mean_roc_curve(pairs, weights=None) -> pd.DataFrame:
    """Weighted vertical average of the ROC curves of ``(y, p)`` pairs.

    Every false positive rate where any curve bends appears twice (the mean sensitivity
    just before and just after it), so between points every curve is a straight line
    and the trapezoid area under the average is exactly the weighted mean of the AUROCs
    (Mann-Whitney, ties counted half). With the .632+ weights (apparent curve ``1 - w``,
    each out-of-bag curve ``w / B``) its area is the .632+ AUROC.
    """
    weights = np.full(len(pairs), 1 / len(pairs)) if weights is None else np.asarray(weights, float)
    curves = [roc_points(y, p) for y, p in pairs]
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    before = np.zeros_like(grid)
    after = np.zeros_like(grid)
    for (fpr, tpr), w in zip(curves, weights, strict=True):
        b, a = _one_sided_values(grid, fpr, tpr)
        before += w * b
        after += w * a
    total = weights.sum()
    return pd.DataFrame(
        {"fpr": np.repeat(grid, 2), "tpr": np.column_stack([before, after]).ravel() / total}
    )


def roc_points(y, p) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the ROC curve of ``(y, p)`` at every distinct ``p``, from (0, 0).

    The same numbers as scikit-learn's ``roc_curve(y, p, drop_intermediate=False)[:2]``
    (counts of true and false positives above each distinct score, over the totals), without
    its input checks, which cost a hundred times the arithmetic on a few dozen patients and
    ran thousands of times per training. Both classes must be present.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    last = np.r_[np.flatnonzero(np.diff(p[order])), len(p) - 1]  # the end of each distinct score
    tps = np.r_[0.0, np.cumsum(y[order])[last]]
    fps = np.r_[0.0, 1.0 + last - tps[1:]]
    return fps / fps[-1], tps / tps[-1]


def _one_sided_values(grid: np.ndarray, fpr: np.ndarray, tpr: np.ndarray):
    """The ROC curve's sensitivity just before and just after each grid point.

    At one of its own false positive rates a curve may rise vertically (from the lowest
    to the highest sensitivity there); in between two of them it is a straight line from
    the top of the earlier to the bottom of the later.
    """
    order = np.argsort(fpr, kind="stable")  # one pass, not one per rate (quadratic at 100,000)
    xs, starts = np.unique(fpr[order], return_index=True)
    low = np.minimum.reduceat(tpr[order], starts)
    high = np.maximum.reduceat(tpr[order], starts)
    j = np.searchsorted(xs, grid)  # xs[j - 1] < g <= xs[j]
    exact = np.isin(grid, xs)
    before = np.empty_like(grid)
    after = np.empty_like(grid)
    before[exact], after[exact] = low[j[exact]], high[j[exact]]
    k = j[~exact]
    x0, x1 = xs[k - 1], xs[k]
    line = high[k - 1] + (low[k] - high[k - 1]) * (grid[~exact] - x0) / (x1 - x0)
    before[~exact] = after[~exact] = line
    return before, after


def area(curve: pd.DataFrame) -> float:
    """Trapezoid area under an ROC curve from :func:`roc_curve`."""
    return float(np.trapezoid(curve["tpr"], curve["fpr"]))


def calibration_curve(y, oof, grid=None) -> pd.DataFrame:
    """Mean over repeats of the smoothed calibration curve: ``predicted``, ``observed``, ``lower``, ``upper``.

    The band is the mean of the per-repeat pointwise 95% bands; a repeat whose smoothing
    fails (see ``problem`` there) is left out of the mean.
    """
    rows = _rows(oof)
    if grid is None:
        lo, hi = np.nanquantile(rows, [0.02, 0.98])
        grid = np.linspace(max(lo, 0.01), min(hi, 0.99), 50)
    fits = [smooth_calibration(y, p, grid) for p in rows]
    fits = [f for f in fits if f.problem is None] or fits
    return pd.DataFrame(
        {
            "predicted": grid,
            "observed": np.mean([f.observed for f in fits], axis=0),
            "lower": np.mean([f.lower for f in fits], axis=0),
            "upper": np.mean([f.upper for f in fits], axis=0),
        }
    )


def decision_curve(y, oof, thresholds=None) -> pd.DataFrame:
    """Net benefit of the model (mean over repeats), of treating all and of treating none."""
    thresholds = DECISION_THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
    nb = np.mean([metrics.net_benefit(y, p, thresholds) for p in _rows(oof)], axis=0)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "model": nb,
            "treat_all": metrics.net_benefit_treat_all(y, thresholds),
            "treat_none": 0.0,
        }
    )


def roc_at(y, p, fpr) -> np.ndarray:
    """Sensitivity of the ROC curve of ``(y, p)`` at the false positive rates ``fpr`` (the
    highest at a rate where the curve rises vertically)."""
    f, t = roc_points(y, p)
    return np.interp(np.asarray(fpr, float), f, t)


#: False positive rates at which ROC bands are given.
ROC_BAND_GRID = np.round(np.linspace(0, 1, 51), 2)


def roc_band(tprs, grid=ROC_BAND_GRID) -> pd.DataFrame:
    """Pointwise 95% band of ROC curves: ``fpr``, ``lower``, ``upper`` from the 2.5th and 97.5th
    percentiles of the sensitivities ``tprs`` (one row per resample, one column per rate of
    ``grid``, as :func:`roc_at` gives them)."""
    tprs = np.asarray(tprs, dtype=float)
    lower, upper = np.nanpercentile(tprs, [2.5, 97.5], axis=0)
    return pd.DataFrame({"fpr": np.asarray(grid, float), "lower": lower, "upper": upper})
