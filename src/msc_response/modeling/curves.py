"""Curves of model performance as numbers, and their drawings.

Each ``*_curve`` function returns numbers (a DataFrame); each ``plot_*`` function draws
them on ``ax`` (a new :class:`matplotlib.figure.Figure` when ``ax`` is None, made
without pyplot, so nothing global changes: no backend switch, no open-figure registry,
no ``show()``). Figures are written with :func:`save_figure`.

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

from .modeling import metrics
from .modeling.calibration import smooth_calibration

SIMULATED_LABEL = "SIMULATED data - not patients"
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
    from sklearn.metrics import roc_curve as sk_roc

    weights = np.full(len(pairs), 1 / len(pairs)) if weights is None else np.asarray(weights, float)
    curves = [sk_roc(np.asarray(y, int), p, drop_intermediate=False)[:2] for y, p in pairs]
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


def _one_sided_values(grid: np.ndarray, fpr: np.ndarray, tpr: np.ndarray):
    """The ROC curve's sensitivity just before and just after each grid point.

    At one of its own false positive rates a curve may rise vertically (from the lowest
    to the highest sensitivity there); in between two of them it is a straight line from
    the top of the earlier to the bottom of the later.
    """
    xs = np.unique(fpr)
    low = np.array([tpr[fpr == x].min() for x in xs])
    high = np.array([tpr[fpr == x].max() for x in xs])
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


def new_axes(ax=None, figsize=(5, 4.5)):
    """``ax``, or the axes of a new figure that pyplot does not know about."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).add_subplot()


def plot_roc(curve: pd.DataFrame, label: str, ax=None, title: str = "ROC (cross-validated)"):
    """Draw an ROC curve from :func:`roc_curve` or :func:`mean_roc_curve`."""
    ax = new_axes(ax)
    ax.plot(curve["fpr"], curve["tpr"], label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_calibration(curve: pd.DataFrame, label: str, ax=None, y=None, p=None):
    """Draw a smoothed calibration curve with its band; a rug of predictions when ``p`` is given."""
    ax = new_axes(ax)
    ax.fill_between(curve["predicted"], curve["lower"], curve["upper"], alpha=0.2, lw=0)
    ax.plot(curve["predicted"], curve["observed"], label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="ideal")
    if p is not None:
        p = np.asarray(p, float)
        y = np.zeros_like(p) if y is None else np.asarray(y, float)
        ax.plot(p[y == 1], np.full((y == 1).sum(), 0.99), "|", color="black", ms=6)
        ax.plot(p[y == 0], np.full((y == 0).sum(), 0.01), "|", color="black", ms=6)
    ax.set(xlabel="predicted probability", ylabel="observed proportion (smoothed)",
           xlim=(0, 1), ylim=(0, 1), title="Calibration (cross-validated)")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_decision(curve: pd.DataFrame, label: str, ax=None):
    """Draw a decision curve from :func:`decision_curve`; a band if it has ``lower``/``upper``."""
    ax = new_axes(ax)
    if {"lower", "upper"} <= set(curve.columns):
        ax.fill_between(curve["threshold"], curve["lower"], curve["upper"], alpha=0.2, lw=0)
    ax.plot(curve["threshold"], curve["model"], label=label)
    ax.plot(curve["threshold"], curve["treat_all"], ls="--", label="treat all")
    ax.plot(curve["threshold"], curve["treat_none"], ls=":", color="grey", label="treat none")
    low = min(-0.05, float(curve[["model", "treat_all"]].min().min()))
    high = float(curve[["model", "treat_all"]].max().max()) + 0.15
    ax.set(xlabel="threshold probability", ylabel="net benefit", ylim=(max(low, -0.5), high),
           title="Decision curve (cross-validated)")  # fmt: skip
    ax.legend(fontsize=8)
    return ax


def save_figure(ax, path, *, simulated: bool = False) -> None:
    """Write the figure of ``ax`` to ``path`` (labelled when the data are simulated)."""
    fig = ax.figure
    if simulated:
        fig.suptitle(SIMULATED_LABEL, color="firebrick", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
