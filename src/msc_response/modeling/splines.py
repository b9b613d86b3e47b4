"""Restricted cubic splines of continuous predictors, log of skewed labs (``logistic_rcs``).

Why this is the default model (Harrell, *Regression Modeling Strategies*, 2nd ed., 2015,
sections 2.4.5-2.4.6 and 9.10; the R package ``rms``): a clinical predictor is rarely linear
in the log-odds, and a model that is linear in raw labs loses to a one-variable score when
the truth is curved or a lab is strongly skewed (bilirubin spans two orders of magnitude).
The field's default is to spend a few degrees of freedom on each continuous predictor as a
restricted (natural) cubic spline - cubic between the knots, linear beyond the outer ones
so the tails do not swing - and to shrink everything with a penalty so those degrees of
freedom do not overfit. Every choice is fixed before any data are seen:

- **Log of skewed labs.** Bilirubin, creatinine and INR (:data:`LOG_LABS`) enter on the
  log scale, as every liver score enters them (MELD uses ``ln``); values are floored at
  the lower end of their plausible range first, so a zero cannot give ``-inf``.
- **Knots by sample size** (Harrell's rule, section 2.4.6): 3 knots below 30 patients, 4
  below 100, 5 from 100 on, at his quantiles (:data:`KNOT_QUANTILES`); with fewer than 100
  patients the outer knots move in to the 5th smallest and 5th largest values, as
  ``rms::rcspline.eval`` does. Knots that coincide (ties) are merged; a predictor with fewer
  than 3 distinct knots (flags, most regimen columns) stays linear, and a grade 0-2 gets
  3 knots at its levels (2 degrees of freedom for 3 levels: as saturated as a factor).
- **Penalised.** The expanded columns are standardised and fitted by the same L2-penalised
  logistic regression as ``logistic_l2`` (penalty chosen by inner cross-validation), so a
  spline term is kept only as far as it predicts held-out patients.

The basis is Harrell's (``rcspline.eval(..., inclx=TRUE, norm=2)``): for knots
``t_1 < ... < t_k`` the column ``x`` itself and, for ``j = 1 .. k-2``,
``[(x-t_j)_+^3 - (x-t_{k-1})_+^3 (t_k-t_j)/(t_k-t_{k-1}) + (x-t_k)_+^3 (t_{k-1}-t_j)/(t_k-t_{k-1})]
/ (t_k-t_1)^2``; with an intercept it spans the natural cubic splines with those knots
(patsy's ``cr()``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

#: Skewed labs that enter on the log scale (the scores' convention), with the floor applied
#: before the log (the lower end of the plausible range, canonical units).
LOG_LABS: dict[str, float] = {"bilirubin": 0.05, "creatinine": 0.1, "inr": 0.5}

#: Harrell's default knot positions (quantiles) by number of knots (RMS table 2.3).
KNOT_QUANTILES: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
}


def n_knots(n: int) -> int:
    """Harrell's number of knots for ``n`` patients: 3 below 30, 4 below 100, else 5."""
    return 3 if n < 30 else 4 if n < 100 else 5


def log_floor(feature: str) -> float | None:
    """The floor before the log if ``feature`` is a skewed lab (``baseline_bilirubin``), else None."""
    name = feature.removeprefix("baseline_")
    return LOG_LABS.get(name)


def knots(x: np.ndarray, k: int) -> np.ndarray:
    """Distinct knots of ``x`` at Harrell's quantiles for ``k`` knots (``rcspline.eval``'s rule).

    Below 100 values the outer knots are the 5th smallest and 5th largest values. Ties
    may merge knots: fewer than ``k`` may come back.
    """
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    t = np.quantile(x, KNOT_QUANTILES[k])  # order statistics: the same numbers sorted or not
    if len(x) < 100 and len(x) >= 10:
        x = np.sort(x)  # only here: a sort of every column cost ~0.1 s per fit at 100,000
        t[0], t[-1] = x[4], x[-5]
    return np.unique(t)


def rcs_basis(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The ``k - 2`` nonlinear columns of Harrell's restricted cubic spline with knots ``t``."""
    x = np.asarray(x, dtype=float)[:, None]
    k = len(t)
    if k < 3:
        return np.empty((len(x), 0))
    tk, tk1 = t[-1], t[-2]
    tj = t[None, : k - 2]
    cube = lambda u: np.maximum(u, 0.0) ** 3  # noqa: E731
    out = (
        cube(x - tj)
        - cube(x - tk1) * (tk - tj) / (tk - tk1)
        + cube(x - tk) * (tk1 - tj) / (tk - tk1)
    )
    return out / (tk - t[0]) ** 2


class SplineExpansion(TransformerMixin, BaseEstimator):
    """Each column as itself (logged if a skewed lab) plus its restricted cubic spline terms.

    Parameters
    ----------
    feature_names : tuple of str
        The input columns' names, in order (they say which labs are logged).

    Attributes (after ``fit``)
    ----------
    floors_ : ndarray
        Per input column, the floor before the log (NaN: not logged).
    knots_ : list of ndarray
        Per input column, its knots on the (logged) scale (empty: linear).
    source_ : ndarray of int
        Per output column, the input column it comes from (contributions add up by it).

    The output is every input column's linear term first, in input order (output column
    ``j`` is input column ``j``, logged or not: a later step can name a linear term by its
    input's position before the knots are known), then the nonlinear terms, input by input.
    """

    def __init__(self, feature_names: tuple[str, ...] = ()):
        self.feature_names = feature_names

    def _log(self, Z: np.ndarray) -> np.ndarray:
        """``Z`` with the skewed labs' columns floored and logged, in place."""
        logged = ~np.isnan(self.floors_)
        Z[:, logged] = np.log(np.maximum(Z[:, logged], self.floors_[logged]))
        return Z

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        if len(self.feature_names) != X.shape[1]:
            raise ValueError(
                f"feature_names: {len(self.feature_names)} names for {X.shape[1]} columns"
            )
        floors = [log_floor(str(f)) for f in self.feature_names]
        self.floors_ = np.array([np.nan if f is None else f for f in floors], dtype=float)
        Z = self._log(X.copy())
        k = n_knots(len(X))
        self.knots_ = []
        for j in range(X.shape[1]):
            t = knots(Z[:, j], k)
            self.knots_.append(t if len(t) >= 3 else np.empty(0))
        self.source_ = np.concatenate(
            [np.arange(X.shape[1])]
            + [np.full(max(len(t) - 2, 0), j) for j, t in enumerate(self.knots_)]
        ).astype(int)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        p = X.shape[1]
        # written into one array as they are made: the numbers of stacking the (logged) columns
        # and each basis, without the stacking's copy of all of them (100,000 x 72 at 100,000)
        out = np.empty((len(X), len(self.source_)))
        Z = out[:, :p]
        Z[...] = X
        self._log(Z)
        start = p
        for j, t in enumerate(self.knots_):
            width = max(len(t) - 2, 0)
            if width:
                out[:, start : start + width] = rcs_basis(Z[:, j], t)
            start += width
        return out

    def per_feature(self, contributions: np.ndarray) -> np.ndarray:
        """Column contributions of the expanded matrix added up per input column."""
        out = np.zeros((contributions.shape[0], self.n_features_in_))
        np.add.at(out.T, self.source_, contributions.T)
        return out
