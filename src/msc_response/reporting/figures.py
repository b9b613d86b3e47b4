"""Drawings of the report's numbers; each ``plot_*`` takes what :mod:`.paper_view` and :mod:`.study_tables` return.

Every function draws on ``ax`` (or on a new figure made without pyplot when ``ax`` is
None), returns the Axes, and changes nothing global: no backend switch, no pyplot figure
registry, no ``show()``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plotting import new_axes
from .study_tables import TOTAL

#: Colours of the groups in line plots (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _by_arm_text(row: pd.Series, per_line: int = 3) -> str:
    parts = [f"{arm}: {int(n)}" for arm, n in row.drop(TOTAL).items()]
    return "\n".join("   ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line))


def plot_patient_flow(flow: pd.DataFrame, ax=None):
    """The patient flow (from :func:`~.study_tables.flow_by_arm`) as boxes with the count of each arm.

    The input, the included patients and the two outcome classes run down the left;
    each exclusion reason branches off to the right, between the input and the included.
    """
    steps = list(flow.index)
    exclusions = [s for s in steps if s.startswith("excluded")]
    outcome = [s for s in ("responders", "non-responders") if s in steps]
    y_included = -1.0 - max(0, len(exclusions) - 1)
    y_bottom = y_included - (1.0 if outcome else 0.0)
    ax = new_axes(ax, figsize=(10, 1.6 * (1 - y_bottom) + 0.5))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(y_bottom - 0.45, 0.45)
    box = {"boxstyle": "round,pad=0.5", "fc": "#f4f6f8", "ec": "#445"}
    arrow = {"arrowstyle": "->", "color": "#445"}
    x_main = 0.3

    def draw(x, y, step):
        text = f"{step}: {int(flow.loc[step, TOTAL])}\n{_by_arm_text(flow.loc[step])}"
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, bbox=box)

    draw(x_main, 0.0, "patients in input")
    draw(x_main, y_included, "included")
    ax.annotate("", xy=(x_main, y_included + 0.3), xytext=(x_main, -0.3), arrowprops=arrow)
    for i, step in enumerate(exclusions):
        y = -0.5 - i
        draw(0.76, y, step)
        ax.annotate("", xy=(0.52, y), xytext=(x_main, y), arrowprops=arrow)
    for x, step in zip((0.14, 0.5), outcome, strict=False):
        draw(x, y_bottom, step)
        ax.annotate("", xy=(x, y_bottom + 0.3), xytext=(x_main, y_included - 0.3), arrowprops=arrow)
    ax.set_title("Patient flow (counts by arm)", fontsize=10)
    return ax


def plot_proportions(table: pd.DataFrame, title: str, ax=None):
    """Responders x/n with exact 95% intervals per arm, group and overall (:func:`~.paper_view.responders_by_arm`)."""
    ax = new_axes(ax, figsize=(7, 0.42 * len(table) + 1.2))
    ypos = np.arange(len(table))[::-1]
    colours = np.where(
        table["level"] == "arm", PALETTE[0], np.where(table["level"] == "all", "black", PALETTE[1])
    )
    for y, (_, row), c in zip(ypos, table.iterrows(), colours, strict=True):
        if row["n"] == 0:
            continue
        ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=c, lw=2)
        ax.plot(row["proportion"], y, "o", color=c)
        ax.text(
            1.02,
            y,
            f"{row['responders']}/{row['n']}",
            va="center",
            fontsize=8,
            transform=ax.get_yaxis_transform(),
        )
    ax.set_yticks(ypos, table["arm"], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("responders (exact 95% interval)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_changes(table: pd.DataFrame, title: str, unit: str, ax=None):
    """Mean change with its t 95% interval per arm, group and overall (:func:`~.paper_view.change_by_arm`)."""
    ax = new_axes(ax, figsize=(7, 0.42 * len(table) + 1.2))
    ypos = np.arange(len(table))[::-1]
    for y, (_, row) in zip(ypos, table.iterrows(), strict=True):
        c = (
            "black"
            if row["level"] == "all"
            else PALETTE[0]
            if row["level"] == "arm"
            else PALETTE[1]
        )
        if np.isfinite(row["ci_low"]):
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=c, lw=2)
        if np.isfinite(row["mean"]):
            ax.plot(row["mean"], y, "o", color=c)
    ax.axvline(0, color="grey", ls=":")
    ax.set_yticks(
        ypos, [f"{a} (n={n})" for a, n in zip(table["arm"], table["n"], strict=True)], fontsize=8
    )
    ax.set_xlabel(f"mean change, follow-up minus baseline ({unit}; t 95% interval)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_cell_course(course: pd.DataFrame, by: str, ax=None, *, population: str | None = None):
    """Mean cell fraction by day with t 95% intervals, one line per group (:func:`~.paper_view.cell_course`)."""
    ax = new_axes(ax, figsize=(7, 4))
    part = course[course["by"] == by]
    if population is not None:
        part = part[part["population"] == population]
    groups = list(dict.fromkeys(part["group"]))
    width = max(1.0, 0.6 * (part["day"].max() - part["day"].min()) / 60) if len(part) else 1.0
    for i, group in enumerate(groups):
        g = part[part["group"] == group].sort_values("day")
        offset = (
            (i - (len(groups) - 1) / 2) * width * 0.4
        )  # side by side, so intervals stay readable
        x = g["day"].to_numpy(dtype=float) + offset
        err = np.vstack([g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.errorbar(x, g["mean"], yerr=err, marker="o", ms=4, capsize=2, lw=1.5,
                    color=PALETTE[i % len(PALETTE)], label=f"{group}")  # fmt: skip
    pop = population or (part["population"].iloc[0] if len(part) else "cell")
    ax.set(xlabel="study day", ylabel=f"{pop} fraction (mean, t 95% interval)")
    ax.set_title(f"{pop} by day, by {'arm' if by == 'arm' else 'responder status'}", fontsize=10)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 1.0))  # a fraction: t intervals of few values may pass 0
    if groups:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return ax


def plot_instability(original, bootstrap, ax=None, *, mape: float | None = None, rows=None):
    """Riley & Collins' prediction instability plot: each patient's bootstrap-model predictions
    (``bootstrap``, B x n) against the original model's (``original``), with the 2.5th and
    97.5th percentiles of each patient's predictions. ``rows``: the patients whose dots are
    drawn (:func:`~msc_response.plotting.patient_sample`; all when None); the percentile
    lines are over every patient."""
    ax = new_axes(ax, figsize=(5.5, 5))
    p = np.asarray(original, dtype=float)
    boot = np.atleast_2d(np.asarray(bootstrap, dtype=float))
    p_dots, boot_dots = (p, boot) if rows is None else (p[rows], boot[:, rows])
    ax.scatter(np.broadcast_to(p_dots, boot_dots.shape).ravel(), boot_dots.ravel(), s=4, alpha=0.15,
               color=PALETTE[0], lw=0, label="bootstrap models")  # fmt: skip
    order = np.argsort(p)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    ax.plot(
        p[order], lo[order], color=PALETTE[5], lw=1, ls="--", label="2.5th and 97.5th percentiles"
    )
    ax.plot(p[order], hi[order], color=PALETTE[5], lw=1, ls="--")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    title = "Prediction instability" + (f" (MAPE {mape:.3f})" if mape is not None else "")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="prediction of the original model",
           ylabel="prediction of a bootstrap model", title=title)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left")
    return ax


def plot_dependence(values, contributions, colour, ax=None, *, feature: str, colour_label: str):
    """One feature's contribution (log-odds) against its value, coloured by another feature."""
    ax = new_axes(ax, figsize=(6, 4.2))
    x = np.asarray(values, dtype=float)
    c = np.asarray(colour, dtype=float)
    points = ax.scatter(
        x, np.asarray(contributions, dtype=float), c=c, cmap="viridis", s=22, edgecolor="k", lw=0.3
    )
    ax.figure.colorbar(points, ax=ax, label=colour_label)
    ax.axhline(0, color="grey", ls=":")
    ax.set(
        xlabel=feature,
        ylabel=f"contribution of {feature} (log-odds)",
        title=f"Dependence on {feature}",
    )
    return ax


def plot_subgroups(table: pd.DataFrame, ax=None):
    """Subgroup AUROCs with DeLong 95% intervals (:func:`~.subgroups.subgroup_performance`);
    groups with too few patients are listed without a point."""
    ax = new_axes(ax, figsize=(7, 0.38 * len(table) + 1.2))
    ypos = np.arange(len(table))[::-1]
    for y, (_, row) in zip(ypos, table.iterrows(), strict=True):
        if np.isfinite(row["auroc"]):
            ax.plot([row["auroc_low"], row["auroc_high"]], [y, y], color=PALETTE[0], lw=2)
            ax.plot(row["auroc"], y, "o", color=PALETTE[0])
        else:
            ax.text(0.02, y, "too few", va="center", fontsize=7, color="grey")
    ax.axvline(0.5, color="grey", ls=":")
    ax.set_yticks(ypos, [f"{s} = {lv} (n={n})" for s, lv, n in zip(table["subgroup"], table["level"], table["n"],
                                                                   strict=True)], fontsize=8)  # fmt: skip
    ax.set(xlim=(0, 1), xlabel="AUROC (DeLong 95% interval)", title="Discrimination by subgroup")
    ax.grid(axis="x", alpha=0.3)
    return ax
