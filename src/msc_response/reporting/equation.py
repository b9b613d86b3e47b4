"""The full equation of a fitted logistic model, in the features' own units.

The stored pipeline imputes the median, standardises, then applies the logistic
regression; every step before the regression is affine in each feature, so the model
is ``logit(p) = b0 + sum_j b_j x_j`` with a missing ``x_j`` replaced by its training
median. The coefficients are read off the fitted pipeline by probing its transform
(no reliance on the steps' attribute names), and the probe is checked to be affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Equation:
    """``logit(p) = intercept + sum(terms.coefficient x value)``; ``terms`` has ``feature``,
    ``unit``, ``coefficient`` (per unit of the feature), ``imputed`` (used when missing)."""

    intercept: float
    terms: pd.DataFrame

    def text(self, digits: int = 4) -> str:
        parts = [f"{self.intercept:.{digits}g}"]
        for t in self.terms.itertuples():
            sign = "-" if t.coefficient < 0 else "+"
            parts.append(f" {sign} {abs(t.coefficient):.{digits}g} x {t.feature}")
        return "logit(p) = " + "".join(parts)

    def logit(self, X: pd.DataFrame) -> np.ndarray:
        """The linear predictor of rows ``X`` (missing values imputed as the model does)."""
        x = X[list(self.terms["feature"])].astype(float).to_numpy()
        x = np.where(np.isnan(x), self.terms["imputed"].to_numpy()[None, :], x)
        return self.intercept + x @ self.terms["coefficient"].to_numpy()


def logistic_equation(fitted, feature_spec: list[dict] | None = None) -> Equation:
    """The equation of a logistic :class:`~msc_response.modeling.fitted.FittedModel`.

    Raises
    ------
    ValueError
        The model is not logistic, or its preprocessing is not affine in each feature.
    """
    if fitted.kind != "logistic":
        raise ValueError(f"fitted: expected a logistic model, got kind {fitted.kind!r}")
    pipe, cols = fitted.estimator, list(fitted.feature_columns)
    k = len(cols)

    def transform(m: np.ndarray) -> np.ndarray:
        return np.asarray(pipe[:-1].transform(pd.DataFrame(m, columns=cols)), dtype=float)

    base = transform(np.zeros((1, k)))[0]
    slope = np.diag(transform(np.eye(k))) - base
    check = transform(2.5 * np.eye(k))
    if not np.allclose(np.diag(check), base + 2.5 * slope, rtol=1e-9, atol=1e-9) or np.any(
        slope == 0
    ):
        raise ValueError(
            "fitted: the preprocessing is not affine in each feature; no closed equation"
        )
    missing = transform(np.full((1, k), np.nan))[0]
    lr = pipe[-1]
    coef = np.asarray(lr.coef_, dtype=float).ravel()
    units = {f["name"]: f.get("unit") or "" for f in feature_spec or []}
    terms = pd.DataFrame({"feature": cols, "unit": [units.get(c, "") for c in cols], "coefficient": coef * slope,
                          "imputed": (missing - base) / slope})  # fmt: skip
    return Equation(float(np.asarray(lr.intercept_).ravel()[0] + coef @ base), terms)
