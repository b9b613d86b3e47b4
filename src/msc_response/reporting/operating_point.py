"""The operating point: what the model's yes/no call does at the decision threshold.

A patient is a predicted responder when the predicted probability is at least the
threshold (``model.threshold`` of the config, stored with the model; the rule is
:func:`.metrics.predicted_responder`, the same as the ``predicted_response`` column of
``score``). At that threshold: the 2x2 table of predicted against observed response, and
sensitivity, specificity, positive and negative predictive value, each a proportion of
patients with its exact (Clopper-Pearson) 95% interval (:func:`.intervals.proportion`).

PPV and NPV depend on the prevalence of the cohort they are measured in; sensitivity
and specificity less so. In the training report they come from the out-of-fold
predictions (mean over the repeats), so they are cross-validated, not apparent; their
exact intervals treat those predictions as fixed (coverage against fresh-cohort truth:
``benchmarks/bench_honest_validation.py``). Numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..modeling.metrics import predicted_responder
from .intervals import Proportion, proportion

#: The measures, in the order they are shown, and what a reader sees for each.
MEASURES = {
    "sensitivity": "sensitivity (responders called responders)",
    "specificity": "specificity (non-responders called non-responders)",
    "ppv": "PPV (called responders who responded)",
    "npv": "NPV (called non-responders who did not respond)",
}


@dataclass(frozen=True)
class OperatingPoint:
    """Counts of the 2x2 table at ``threshold`` and the four measures with exact intervals."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def measures(self) -> dict[str, Proportion]:
        """Sensitivity, specificity, PPV and NPV, each x/n with its exact 95% interval."""
        return {
            "sensitivity": proportion(self.tp, self.tp + self.fn),
            "specificity": proportion(self.tn, self.tn + self.fp),
            "ppv": proportion(self.tp, self.tp + self.fp),
            "npv": proportion(self.tn, self.tn + self.fn),
        }

    def table(self) -> pd.DataFrame:
        """The 2x2 table: predicted (rows) against observed (columns), with totals."""
        return pd.DataFrame(
            {
                "predicted": ["responder", "non-responder", "total"],
                "observed responder": [self.tp, self.fn, self.tp + self.fn],
                "observed non-responder": [self.fp, self.tn, self.fp + self.tn],
                "total": [self.tp + self.fp, self.fn + self.tn, self.n],
            }
        )

    def measures_table(self) -> pd.DataFrame:
        """One row per measure: patients x of n, the estimate and its exact 95% interval."""
        rows = []
        for key, pr in self.measures().items():
            rows.append({"measure": MEASURES[key], "x": pr.x, "n": pr.n, "estimate": pr.estimate,
                         "95% CI low": pr.low, "95% CI high": pr.high})  # fmt: skip
        return pd.DataFrame(rows)

    def numbers(self, prefix: str = "") -> dict[str, float]:
        """Every count, estimate and bound, flat (for ``validation.json`` and MLflow metrics);
        a measure whose denominator is 0 is left out (NaN is not a number to log)."""
        out = {f"{prefix}threshold": float(self.threshold)}
        for key in ("tp", "fp", "fn", "tn"):
            out[f"{prefix}{key}"] = float(getattr(self, key))
        for key, pr in self.measures().items():
            if pr.n:
                out.update({f"{prefix}{key}": pr.estimate, f"{prefix}{key}_ci_low": pr.low,
                            f"{prefix}{key}_ci_high": pr.high})  # fmt: skip
        return out

    def text(self) -> str:
        """One line: ``"at threshold 0.50: sensitivity 8/12 (66.7%; 34.9-90.1%), ..."``."""
        parts = [f"{key if key in ('sensitivity', 'specificity') else key.upper()} {pr.text()}"
                 for key, pr in self.measures().items()]  # fmt: skip
        return f"at threshold {self.threshold:.2f}: " + ", ".join(parts)


def operating_point(y, p, threshold: float) -> OperatingPoint:
    """The 2x2 table of outcomes ``y`` against :func:`.metrics.predicted_responder` at ``threshold``.

    Examples
    --------
    >>> op = operating_point([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7], 0.5)
    >>> (op.tp, op.fp, op.fn, op.tn)
    (2, 1, 1, 1)
    >>> op.measures()["sensitivity"].text()
    '2/3 (66.7%; 9.4-99.2%)'
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y and p: expected the same shape, got {y.shape!r} and {p.shape!r}")
    called = predicted_responder(p, threshold).astype(bool)
    observed = y == 1
    return OperatingPoint(float(threshold), int((called & observed).sum()), int((called & ~observed).sum()),
                          int((~called & observed).sum()), int((~called & ~observed).sum()))  # fmt: skip
