"""The page of ``msc-response plan``: power curves of candidate randomised designs.

Numbers come from :func:`msc_response.modeling.plan.plan`; this module draws the power
curves (with Monte Carlo 95% bands) and writes the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..confidence import Z
from ..plotting import new_axes
from .page import Page


def plot_power_curves(results: list[dict], key: str = "power_primary", ax=None):
    """Power against patients per arm, one line per design, +/- Z (1.96) MCSE."""
    ax = new_axes(ax, figsize=(5.5, 4))
    frame = pd.DataFrame(results)
    for name, rows in frame.groupby("design", sort=False):
        n = rows["n_per_arm"].to_numpy()
        p = np.array([r["value"] for r in rows[key]])
        se = np.array([r["mcse"] for r in rows[key]])
        ax.errorbar(n, p, yerr=Z * se, marker="o", capsize=3, label=name)
    ax.axhline(0.8, ls="--", color="grey", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("patients per arm")
    ax.set_ylabel("power" if key == "power_primary" else "power of the MX1+ x treatment test")
    ax.legend(fontsize=7)
    return ax


def plan_table(results: list[dict]) -> pd.DataFrame:
    """One row per design and size: power and NNT with their Monte Carlo errors."""
    return pd.DataFrame([{
        "design": r["design"], "n per arm": r["n_per_arm"], "regimen": r["regimen"],
        "power (primary)": r["power_primary"]["value"], "MCSE": r["power_primary"]["mcse"],
        "power (MX1+ interaction)": r["power_interaction"]["value"], "MCSE ": r["power_interaction"]["mcse"],
        "true ATE": r["true_ate"]["value"], "treated per extra responder": r["treated_per_extra_responder"]["value"],
    } for r in results])  # fmt: skip


def write_plan_page(results: list[dict], out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` (SIMULATED: every design is simulated)."""
    role = results[0]["mx1_role"]
    page = Page("Planning the next trial", simulated=True,
                subtitle=f"Monte Carlo power of candidate randomised designs, MX1+ assumed {role}")  # fmt: skip
    sec = page.section("Power of candidate designs")
    sec.paragraph(
        "Each design is simulated many times under the assumed truth and analysed as the product analyses "
        "a trial: the primary endpoint succeeds when the Newcombe 95% interval of the risk difference lies "
        "above 0; the MX1+ x treatment test when the interaction is called predictive (odds-ratio scale, "
        "two-sided 5%). MCSE: Monte Carlo standard error. The control-arm and effect sizes are assumptions "
        "(docs/benefit.md), so these powers are as good as those assumptions."
    )
    sec.figure(
        plot_power_curves(results),
        "power curves",
        "Power for the primary endpoint (bars: 95% Monte Carlo).",
    )
    sec.figure(plot_power_curves(results, "power_interaction"), "interaction power curves",
               "Power to call MX1+ predictive.")  # fmt: skip
    sec.table(plan_table(results), "Power, true ATE and patients treated per extra responder")
    return page.write(out_dir)
