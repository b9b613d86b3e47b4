"""Intervals for the descriptive numbers of the report: proportions and means.

* A proportion x/n: the exact (Clopper-Pearson) 95% interval, as
  ``scipy.stats.binomtest(x, n).proportion_ci(method="exact")``.
* A mean: the t interval, mean +/- t(0.975, n - 1) x SD / sqrt(n).

Every number a person reads in the report comes with one of these, or with the reason
it has none (``n`` too small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


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
    """The mean of ``n`` values with its t interval (NaN, and ``why_not``, below 2 values)."""

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
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return Mean(n, m, m - half, m + half)
