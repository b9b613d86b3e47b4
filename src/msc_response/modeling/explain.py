"""SHAP explanations: per patient (top contributions) and global (beeswarm and bar plots).

Values come from :meth:`FittedModel.contributions` (LightGBM's native TreeSHAP, or
coefficient x centred value for logistic regression); the ``shap`` package only draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plotting import new_axes


def top_contributions(contrib: np.ndarray, X: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` largest contributions (by absolute value) of each row.

    Returns columns ``feature_i``, ``value_i``, ``contribution_i`` for i = 1..k; ties are
    broken by feature order, so the output is deterministic.
    """
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k!r}")
    k = min(k, contrib.shape[1])
    order = _largest_first(np.abs(contrib), k)
    names = np.asarray(X.columns)
    values = X.to_numpy(dtype=float)
    rows = np.arange(len(X))[:, None]
    out = {}
    for i in range(k):  # categorical: a few names repeated on every row
        out[f"feature_{i + 1}"] = pd.Categorical.from_codes(order[:, i], categories=names)
        out[f"value_{i + 1}"] = values[rows[:, 0], order[:, i]]
        out[f"contribution_{i + 1}"] = np.round(contrib[rows[:, 0], order[:, i]], 6)
    return pd.DataFrame(out, index=X.index)


def _largest_first(size: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` largest ``size`` of each row, largest first, ties in column order:
    the first ``k`` of a stable descending sort, found by ``k`` row-wise ``argmax`` (the first
    of equal values) instead of sorting every row. NaN (never a contribution) sorts last."""
    if k == size.shape[1] or np.isnan(size).any():
        return np.argsort(-size, axis=1, kind="stable")[:, :k]
    order = np.empty((len(size), k), dtype=np.intp)
    rows = np.arange(len(size))
    for i in range(k):
        order[:, i] = size.argmax(axis=1)
        size[rows, order[:, i]] = -1.0  # below every size: taken
    return order


def global_importance(contrib: np.ndarray, columns) -> pd.DataFrame:
    """Mean absolute contribution of each feature, largest first."""
    imp = pd.DataFrame(
        {"feature": list(columns), "mean_abs_contribution": np.abs(contrib).mean(axis=0)}
    )
    return imp.sort_values("mean_abs_contribution", ascending=False, kind="stable").reset_index(
        drop=True
    )


def plot_shap(
    contrib: np.ndarray,
    base: np.ndarray,
    X: pd.DataFrame,
    ax=None,
    *,
    kind: str = "beeswarm",
    max_display: int = 15,
):
    """SHAP beeswarm (``kind="beeswarm"``) or mean |SHAP| bar plot on ``ax``; returns the Axes.

    A new figure is made without pyplot when ``ax`` is None; the matplotlib backend is
    never switched and nothing is shown.
    """
    import shap  # deferred: heavy, needed only to draw

    draw = {"beeswarm": shap.plots.beeswarm, "bar": shap.plots.bar}
    if kind not in draw:
        raise ValueError(f"kind: expected one of {sorted(draw)}, got {kind!r}")
    expl = shap.Explanation(
        values=contrib,
        base_values=base,
        data=X.to_numpy(dtype=float),
        feature_names=list(X.columns),
    )
    ax = new_axes(ax, figsize=(7, 5))
    options = {"plot_size": None} if kind == "beeswarm" else {}
    draw[kind](expl, max_display=max_display, ax=ax, show=False, **options)
    return ax
