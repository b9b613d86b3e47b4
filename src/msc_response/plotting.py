"""Drawing, with matplotlib only: new axes, the performance curves, the SIMULATED label, saving.

Each ``plot_*`` function draws numbers computed elsewhere (the curves of
:mod:`msc_response.modeling.curves`) on ``ax`` (a new :class:`matplotlib.figure.Figure`
when ``ax`` is None, made without pyplot, so nothing global changes: no backend switch,
no open-figure registry, no ``show()``). Figures are written with :func:`save_figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SIMULATED_LABEL = "SIMULATED data - not patients"


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
