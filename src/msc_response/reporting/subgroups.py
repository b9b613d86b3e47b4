"""Performance within subgroups (sex, etiology, arm): discrimination and calibration-in-the-large.

Within each group: patients, responders (exact interval), the mean predicted probability,
and the AUROC with DeLong's interval (:func:`.intervals.auroc_delong`) - or "too few"
when either outcome class has fewer than :data:`MIN_PER_CLASS` patients, where no
interval would mean anything. Numbers only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import UNIT_RANGE, Auroc, Mean, auroc_delong, mean, proportion
from .paper_view import NO_ARM, arm_order

#: Fewest patients of each outcome class for a subgroup AUROC.
MIN_PER_CLASS = 5

#: Patient characteristics the report breaks performance down by.
SUBGROUPS = ("sex", "etiology", "arm")


def subgroup_performance(
    groups: pd.DataFrame, y, p, *, min_per_class: int = MIN_PER_CLASS
) -> pd.DataFrame:
    """One row per (characteristic, level): ``n``, ``responders`` (x/n with exact interval),
    ``observed`` and ``predicted`` (mean predicted probability, t interval on the logit scale), ``auroc``,
    ``auroc_low``, ``auroc_high`` and ``note`` ("too few ..." where the AUROC is not
    estimated; why the mean predicted probability has no interval).

    ``groups`` has one row per patient (same order as ``y`` and ``p``) and a column per
    characteristic of :data:`SUBGROUPS` present.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    rows = []
    for col in SUBGROUPS:
        if col not in groups:
            continue
        values = (
            groups[col]
            .astype(object)
            .where(groups[col].notna(), NO_ARM if col == "arm" else "(missing)")
        )
        values = values.astype(str).to_numpy()
        levels = arm_order(values) if col == "arm" else sorted(set(values))
        for level in levels:
            mask = values == level
            yi, pi = y[mask], p[mask]
            obs = proportion(int(yi.sum()), int(mask.sum()))
            pred = mean(pi, within=UNIT_RANGE)
            auc = auroc_delong(yi, pi, min_per_class=min_per_class)
            rows.append({"subgroup": col, "level": level, "n": int(mask.sum()),
                         "responders": obs.text(), "observed": obs.estimate, "observed_low": obs.low,
                         "observed_high": obs.high, "predicted": pred.mean, "predicted_low": pred.low,
                         "predicted_high": pred.high, "auroc": auc.estimate, "auroc_low": auc.low,
                         "auroc_high": auc.high, "note": _note(auc, pred)})  # fmt: skip
    return pd.DataFrame(rows)


def _note(auc: Auroc, pred: Mean) -> str:
    """Why the AUROC, its interval or the interval of the mean predicted probability is missing."""
    notes = (auc.why_not, auc.why_no_interval and f"AUROC: no interval ({auc.why_no_interval})",
             pred.why_not and f"mean predicted: no interval ({pred.why_not})")  # fmt: skip
    return "; ".join(n for n in notes if n)


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table of :func:`subgroup_performance` with the columns a reader sees, named for them."""
    return table.drop(columns=["observed", "observed_low", "observed_high"]).rename(columns={
        "predicted": "mean predicted", "predicted_low": "predicted 95% CI low",
        "predicted_high": "predicted 95% CI high", "auroc": "AUROC", "auroc_low": "AUROC 95% CI low",
        "auroc_high": "AUROC 95% CI high",
    })  # fmt: skip
