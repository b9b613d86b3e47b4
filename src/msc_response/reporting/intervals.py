"""Intervals for the descriptive numbers of the report: proportions and means.

* A proportion x/n: the exact (Clopper-Pearson) 95% interval, as
  ``scipy.stats.binomtest(x, n).proportion_ci(method="exact")``.
* A mean: the t interval, mean +/- t(0.975, n - 1) x SD / sqrt(n); none when the values
  are all equal (a zero-width interval would not cover: benchmarks/bench_report_intervals.py).

Every number a person reads in the report comes with one of these, or with the reason
it has none (``n`` too small, all values equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from ..confidence import LEVEL, Z


@dataclass(frozen=True)
class Proportion:
    """``x`` of ``n``, the proportion and its exact 95% interval (NaN when ``n`` is 0)."""

    x: int
    n: int
    low: float
    high: float

    @property
    def estimate(self) -> float:
        return self.x / self.n if self.n else float("nan")

    def text(self) -> str:
        """``"8/9 (88.9%; 51.8-99.7%)"``, or ``"0/0 (no patients)"``."""
        if self.n == 0:
            return "0/0 (no patients)"
        return (f"{self.x}/{self.n} ({100 * self.estimate:.1f}%; "
                f"{100 * self.low:.1f}-{100 * self.high:.1f}%)")  # fmt: skip


def proportion(x: int, n: int) -> Proportion:
    """``x`` events of ``n`` with the exact (Clopper-Pearson) 95% interval.

    Examples
    --------
    >>> proportion(8, 9).text()
    '8/9 (88.9%; 51.8-99.7%)'
    """
    x, n = int(x), int(n)
    if not 0 <= x <= n:
        raise ValueError(f"x: expected 0 <= x <= n = {n}, got {x!r}")
    if n == 0:
        return Proportion(0, 0, float("nan"), float("nan"))
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=LEVEL, method="exact")
    return Proportion(x, n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class Mean:
    """The mean of ``n`` values with its t interval (NaN, and ``why_not``, below 2 values or
    when all values are equal)."""

    n: int
    mean: float
    low: float
    high: float
    why_not: str | None = None

    def text(self, digits: int = 2) -> str:
        """``"-1.21 (-1.65 to -0.77), n=33"``, or the mean and why there is no interval."""
        if self.n == 0:
            return "no patients"
        if self.why_not:
            return f"{self.mean:.{digits}f} (no interval: {self.why_not}), n={self.n}"
        return (
            f"{self.mean:.{digits}f} ({self.low:.{digits}f} to {self.high:.{digits}f}), n={self.n}"
        )


def mean(values) -> Mean:
    """Mean and t-based 95% interval of the finite ``values`` (missing values are left out).

    Examples
    --------
    >>> m = mean([1.0, 2.0, 3.0])
    >>> round(m.low, 4), round(m.high, 4)
    (-0.4841, 4.4841)
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Mean(0, float("nan"), float("nan"), float("nan"), "no values")
    m = float(v.mean())
    if n < 2:
        return Mean(n, m, float("nan"), float("nan"), "one value")
    se = float(v.std(ddof=1) / np.sqrt(n))
    if se <= 10 * np.finfo(float).eps * abs(m):
        # R's t.test refuses such data ("essentially constant"). A zero-width interval claims a
        # certainty that, say, 5 equal Child-Pugh changes in one arm do not give: it missed
        # the arm's true mean in 17% of simulated 5-patient arms (bench_report_intervals.py)
        return Mean(n, m, float("nan"), float("nan"), f"all {n} values equal")
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * se)
    return Mean(n, m, m - half, m + half)


@dataclass(frozen=True)
class Auroc:
    """AUROC with DeLong's standard error and 95% interval (or why there is none)."""

    estimate: float
    se: float
    low: float
    high: float
    why_not: str | None = None  # no estimate
    why_no_interval: str | None = None  # an estimate, but its standard error is 0

    def text(self) -> str:
        if self.why_not:
            return f"not estimated: {self.why_not}"
        if self.why_no_interval:
            return f"{self.estimate:.3f} (no interval: {self.why_no_interval})"
        return f"{self.estimate:.3f} ({self.low:.3f}-{self.high:.3f})"


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def auroc_delong(y, p, *, min_per_class: int = 1) -> Auroc:
    """AUROC of ``p`` for outcome ``y`` with DeLong's variance (DeLong, DeLong & Clarke-Pearson,
    Biometrics 1988;44:837-45), by midranks (Sun & Xu, IEEE Signal Process Lett 2014;21:1389-93).

    The interval is ``expit(logit(AUROC) +/- 1.96 SE / (AUROC (1 - AUROC)))``: DeLong's
    standard error on the logit scale (delta method), which keeps the interval inside 0-1
    and skews it towards 0.5 (the "LT" interval: Qin G, Hotilovac L, Stat Methods Med Res
    2008;17:207-21; Kottas M, Kuss O, Zapf A, BMC Med Res Methodol 2014;14:26). The plain
    AUROC +/- 1.96 SE covered the true AUROC in only 93% of simulated cohorts of 33 and 91%
    of subgroups of about 21; the logit interval in 95-96%, and is no wider
    (benchmarks/bench_report_intervals.py).
    With fewer than ``min_per_class`` patients in either class there is no estimate, and
    ``why_not`` says so; when the standard error is 0 (an AUROC of 0 or 1, or every
    prediction tied) there is no interval, and ``why_no_interval`` says so.

    Examples
    --------
    >>> a = auroc_delong([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    >>> a.estimate, round(a.se ** 2, 6), round(a.low, 4), round(a.high, 4)
    (0.75, 0.125, 0.0693, 0.9918)
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    if min(m, n) < max(1, min_per_class):
        why = f"too few ({m} responders, {n} non-responders; needs at least {max(1, min_per_class)} of each)"
        return Auroc(float("nan"), float("nan"), float("nan"), float("nan"), why)
    r_all = _midranks(np.concatenate([pos, neg]))
    r_pos, r_neg = _midranks(pos), _midranks(neg)
    v10 = (r_all[:m] - r_pos) / n  # per responder: share of non-responders ranked below (ties half)
    v01 = 1 - (r_all[m:] - r_neg) / m  # per non-responder: share of responders ranked above
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    se = float(np.sqrt(var))
    if se == 0:
        why = {1.0: "every responder ranked above every non-responder",
               0.0: "every responder ranked below every non-responder"}.get(auc, "every prediction tied")  # fmt: skip
        return Auroc(auc, se, float("nan"), float("nan"), why_no_interval=why)
    half = Z * se / (auc * (1 - auc))
    return Auroc(auc, se, float(special.expit(special.logit(auc) - half)),
                 float(special.expit(special.logit(auc) + half)))  # fmt: skip
