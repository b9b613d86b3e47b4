"""The benefit section of the training report (randomised studies only).

Numbers come from :class:`~msc_response.modeling.benefit_validation.BenefitValidation`;
this module only draws and words them: a forest plot of the observed benefit by quarter
of MX1+ and of baseline risk, the calibration-for-benefit plot (observed vs predicted
benefit by quarter of predicted benefit), the ATE, c-for-benefit, E-for-benefit and the
MX1+ x treatment interaction with its intervals and the sample size it would take.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..modeling.benefit_validation import EAVG_INTERVAL_NOTE
from ..plotting import new_axes


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def plot_benefit_forest(
    table: pd.DataFrame, *, ate: float | None = None, label: str = "group", ax=None
):
    """Observed benefit (risk difference, 95% interval) per group, top to bottom; the
    mean predicted benefit as an open marker; the ATE as a dashed line."""
    ax = new_axes(ax, figsize=(5.5, 3.2))
    y = np.arange(len(table))[::-1]
    obs = table["observed"].to_numpy(dtype=float)
    err = np.vstack(
        [obs - table["low"].to_numpy(dtype=float), table["high"].to_numpy(dtype=float) - obs]
    )
    ax.errorbar(obs, y, xerr=err, fmt="s", color="black", capsize=3, label="observed (95% CI)")
    if "predicted" in table:
        ax.plot(table["predicted"], y, "o", mfc="none", color="tab:blue", label="mean predicted")
    if ate is not None:
        ax.axvline(ate, ls="--", color="grey", lw=1, label="ATE")
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(
        y, [f"{label} Q{g} (n={n})" for g, n in zip(table["group"], table["n"], strict=True)]
    )
    ax.set_xlabel("benefit: P(response | MSC) - P(response | standard care)")
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_benefit_calibration(table: pd.DataFrame, ax=None):
    """Observed vs mean predicted benefit by quarter of predicted benefit (95% intervals)."""
    ax = new_axes(ax, figsize=(4.5, 4.2))
    pred = table["predicted"].to_numpy(dtype=float)
    obs = table["observed"].to_numpy(dtype=float)
    err = np.vstack(
        [obs - table["low"].to_numpy(dtype=float), table["high"].to_numpy(dtype=float) - obs]
    )
    ax.errorbar(pred, obs, yerr=err, fmt="o", color="black", capsize=3)
    lo = float(min(pred.min(), table["low"].min(), 0.0))
    hi = float(max(pred.max(), table["high"].max(), 0.0))
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    ax.set_xlabel("predicted benefit (mean in quarter, cross-fitted)")
    ax.set_ylabel("observed benefit (risk difference)")
    return ax


def interaction_lines(inter: dict) -> list[str]:
    """The MX1+ x treatment interaction in words, with intervals and the sample size."""
    if "interaction_or" not in inter:
        return [f"MX1+ x treatment interaction: not estimable ({inter.get('problem', 'no fit')})."]
    o, rd, lr = inter["interaction_or"], inter["interaction_rd"], inter["interaction_lr"]

    def n_text(n):
        return (
            "not estimable (estimate 0)"
            if n is None or not np.isfinite(n)
            else f"about {int(n):,} patients"
        )

    return [
        f"Verdict (pre-specified: odds-ratio scale, two-sided 5%, likelihood-ratio test with a "
        f"parametric-bootstrap p-value): {inter['verdict']} (p = {lr['p']:.3f}, "
        f"{lr['draws']} draws).",
        f"Interaction odds ratio per SD of logit MX1+: {o['estimate']:.2f} (95% CI {o['low']:.2f} to "
        f"{o['high']:.2f}; Wald p = {inter['interaction_log_or']['p']:.3f}, which at phase II sizes "
        "is too small when MX1+ is only prognostic).",
        f"Interaction on the risk-difference scale per SD: {rd['estimate']:+.3f} ({rd['low']:+.3f} to "
        f"{rd['high']:+.3f}; p = {rd['p']:.3f}).",
        f"MX1+ as a prognostic marker (odds ratio per SD, both arms): "
        f"{np.exp(inter['prognostic_log_or']['estimate']):.2f} (p = {inter['prognostic_log_or']['p']:.3f}).",
        "Patients needed to show an interaction of the estimated size with 80% power: "
        f"{n_text(inter.get('n_needed_interaction_or'))} (odds-ratio scale); the estimate is itself "
        "uncertain, so this is a guide, not a design.",
    ]


def add_benefit_section(page, validation) -> None:
    """Add the benefit section for ``validation`` (a BenefitValidation) to ``page``."""
    v = validation
    sec = page.section("Benefit over standard care (randomised comparison)")
    sec.paragraph(
        "These are effects, not associations: the patients were randomised between standard care and MSC. "
        f"Primary benefit model, pre-specified: {v.kind} (PATH statement: risk modelling). Predicted "
        "benefits are cross-fitted: each patient's comes from a model that did not see them."
    )
    sec.definitions({
        "average treatment effect (MSC - standard care)":
            f"{_pct(v.ate.estimate)} (95% CI {_pct(v.ate.low)} to {_pct(v.ate.high)}; "
            f"{v.ate.x1}/{v.ate.n1} vs {v.ate.x0}/{v.ate.n0} responders)",
        "c-for-benefit": f"{v.c_for_benefit.estimate:.3f} (95% CI {v.c_for_benefit.low:.3f} to "
                         f"{v.c_for_benefit.high:.3f}; {len(v.pairs.observed)} matched pairs)",
        "Eavg-for-benefit": f"{v.eavg_for_benefit.estimate:.3f} (interval {EAVG_INTERVAL_NOTE}); "
                            f"E50 {v.e_for_benefit.e50:.3f}, E90 {v.e_for_benefit.e90:.3f}",
    })  # fmt: skip
    if v.by_regimen:
        sec.table(
            pd.DataFrame([{"regimen": r, "MSC - standard care (95% CI)":
                           f"{_pct(rd.estimate)} ({_pct(rd.low)} to {_pct(rd.high)})",
                           "responders, MSC": f"{rd.x1}/{rd.n1}", "responders, standard care": f"{rd.x0}/{rd.n0}"}
                          for r, rd in v.by_regimen.items()]),
            "Average treatment effect of each randomised regimen against the shared control arm "
            "(Newcombe 95% intervals); every other number in this section pools the regimens",
        )  # fmt: skip
    sec.note("c-for-benefit interval: percentiles over bootstrap repeats of the whole procedure (patients "
             "resampled within each arm, the model cross-fitted afresh, pairs matched afresh); its coverage "
             "against simulated truth is in docs/benefit.md.")  # fmt: skip
    if v.interaction is not None:
        sec.subheading("Is MX1+ a predictive biomarker?")
        sec.items(interaction_lines(v.interaction))
    sec.figure(plot_benefit_calibration(v.by_predicted), "calibration for benefit",
               "Observed vs predicted benefit by quarter of predicted benefit (Newcombe 95% intervals).")  # fmt: skip
    sec.table(v.by_predicted, "Calibration for benefit by quarter of predicted benefit")
    if v.by_mx1 is not None:
        sec.figure(plot_benefit_forest(v.by_mx1, ate=v.ate.estimate, label="MX1+"), "benefit by MX1+ quartile",
                   "Observed benefit by quartile of the baseline MX1+ monocyte fraction.")  # fmt: skip
    if v.by_risk is not None:
        sec.figure(plot_benefit_forest(v.by_risk, ate=v.ate.estimate, label="risk"), "benefit by risk quartile",
                   "Observed benefit by quartile of baseline risk (the risk model, blind to treatment).")  # fmt: skip
