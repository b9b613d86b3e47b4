"""Numbers and plots of model performance: ROC, calibration and decision curves.

Each ``*_curve`` function returns numbers; each ``plot_*`` function draws them on an
``ax`` (a new figure when ``ax`` is None) and never calls ``plt.show()``.

Decision curve analysis: Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-74.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _axes(ax):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    return ax


def roc_curve(y, p) -> pd.DataFrame:
    """False and true positive rates at every threshold."""
    from sklearn.metrics import roc_curve as sk_roc

    fpr, tpr, thr = sk_roc(np.asarray(y, int), np.asarray(p, float))
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def calibration_curve(y, p, n_bins: int = 5) -> pd.DataFrame:
    """Mean predicted and observed risk in quantile bins of the prediction."""
    df = pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(p, float)})
    df["bin"] = pd.qcut(df["p"].rank(method="first"), q=min(n_bins, len(df)), labels=False)
    return (
        df.groupby("bin")
        .agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
        .reset_index(drop=True)
    )


def decision_curve(y, p, thresholds=None) -> pd.DataFrame:
    """Net benefit of the model, of treating all and of treating none, by threshold probability."""
    y = np.asarray(y, int)
    p = np.asarray(p, float)
    thresholds = np.arange(0.05, 0.96, 0.05) if thresholds is None else np.asarray(thresholds)
    n, prevalence = len(y), y.mean()
    rows = []
    for t in thresholds:
        pos = p >= t
        tp, fp = np.sum(pos & (y == 1)), np.sum(pos & (y == 0))
        odds = t / (1 - t)
        rows.append(
            {
                "threshold": t,
                "model": tp / n - fp / n * odds,
                "treat_all": prevalence - (1 - prevalence) * odds,
                "treat_none": 0.0,
            }
        )
    return pd.DataFrame(rows)


def plot_roc(curve: pd.DataFrame, label: str, ax=None):
    ax = _axes(ax)
    ax.plot(curve["fpr"], curve["tpr"], label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (out-of-fold)")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_calibration(curve: pd.DataFrame, label: str, ax=None):
    ax = _axes(ax)
    ax.plot(curve["predicted"], curve["observed"], marker="o", label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed proportion",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Calibration (out-of-fold)",
    )
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_decision(curve: pd.DataFrame, label: str, ax=None):
    ax = _axes(ax)
    ax.plot(curve["threshold"], curve["model"], label=label)
    ax.plot(curve["threshold"], curve["treat_all"], ls="--", label="treat all")
    ax.plot(curve["threshold"], curve["treat_none"], ls=":", color="grey", label="treat none")
    low = min(-0.05, float(curve[["model", "treat_all"]].min().min()))
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        ylim=(max(low, -0.5), None),
        title="Decision curve (out-of-fold)",
    )
    ax.legend(fontsize=8)
    return ax


SIMULATED_LABEL = "SIMULATED data - not patients"


def save_figure(ax, path, *, simulated: bool = False) -> None:
    """Write the figure of ``ax`` to ``path`` and close it (labelled when the data are simulated)."""
    import matplotlib.pyplot as plt

    fig = ax.figure
    if simulated:
        fig.suptitle(SIMULATED_LABEL, color="firebrick", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
