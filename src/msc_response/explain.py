"""SHAP explanations: per patient (top contributions) and global (beeswarm and bar plots).

Values come from :meth:`FittedModel.contributions` (LightGBM's native TreeSHAP, or
coefficient x centred value for logistic regression); the ``shap`` package only draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def top_contributions(contrib: np.ndarray, X: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` largest contributions (by absolute value) of each row.

    Returns columns ``feature_i``, ``value_i``, ``contribution_i`` for i = 1..k; ties are
    broken by feature order, so the output is deterministic.
    """
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k!r}")
    k = min(k, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    names = np.asarray(X.columns)
    values = X.to_numpy(dtype=float)
    rows = np.arange(len(X))[:, None]
    out = {}
    for i in range(k):  # categorical: a few names repeated on every row
        out[f"feature_{i + 1}"] = pd.Categorical.from_codes(order[:, i], categories=names)
        out[f"value_{i + 1}"] = values[rows[:, 0], order[:, i]]
        out[f"contribution_{i + 1}"] = np.round(contrib[rows[:, 0], order[:, i]], 6)
    return pd.DataFrame(out, index=X.index)


def global_importance(contrib: np.ndarray, columns) -> pd.DataFrame:
    """Mean absolute contribution of each feature, largest first."""
    imp = pd.DataFrame(
        {"feature": list(columns), "mean_abs_contribution": np.abs(contrib).mean(axis=0)}
    )
    return imp.sort_values("mean_abs_contribution", ascending=False, kind="stable").reset_index(
        drop=True
    )


def save_shap_plots(
    contrib: np.ndarray, base: np.ndarray, X: pd.DataFrame, directory, *, simulated: bool = False
) -> list:
    """Beeswarm and bar plots of the contributions, written as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt
    import shap

    expl = shap.Explanation(
        values=contrib,
        base_values=base,
        data=X.to_numpy(dtype=float),
        feature_names=list(X.columns),
    )
    paths = []
    for name, draw in (
        ("shap_beeswarm.png", shap.plots.beeswarm),
        ("shap_bar.png", shap.plots.bar),
    ):
        plt.figure()
        draw(expl, show=False, max_display=15)
        if simulated:
            from .report import SIMULATED_LABEL

            plt.gcf().suptitle(SIMULATED_LABEL, color="firebrick", fontsize=9)
        path = Path(directory) / name
        plt.gcf().savefig(path, dpi=110, bbox_inches="tight")
        plt.close("all")
        paths.append(path)
    return paths
