"""Calibration of predicted probabilities: logistic recalibration and a smoothed curve.

* Calibration intercept (calibration-in-the-large: ``logit P(y) = a + logit(p)``) and
  slope (``logit P(y) = a + b logit(p)``), Van Calster B et al., J Clin Epidemiol
  2016;74:167-76, fitted by Newton-Raphson with step halving. A fit that does not
  converge, or data the linear predictor (quasi-)separates, give NaN and a reason instead
  of a runaway number. So do predictions that barely vary: the slope is then not
  identified (its standard error exceeds :data:`MAX_SLOPE_SE`); this is what
  cross-validated predictions of a heavily penalised model at 40 patients look like.
* A smoothed calibration curve: logistic regression of the outcome on a restricted cubic
  spline of ``logit(p)`` (the basis of :func:`.splines.rcs_basis`) (3 knots at the 10th, 50th and 90th percentiles; Harrell, RMS
  2015, sec. 2.4.5), with a pointwise 95% Wald band, and the integrated calibration index
  ICI, E50 and E90 (Austin PC, Steyerberg EW. Stat Med 2019;38:4051-65), the mean,
  median and 90th percentile of ``|smoothed observed - predicted|`` over the patients.

Everything here computes numbers; drawing lives in :mod:`msc_response.plotting`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, logit

from ..confidence import Z
from .splines import rcs_basis

#: Predictions are clipped to [EPS, 1 - EPS] before ``logit``.
EPS = 1e-8
#: A calibration slope whose standard error exceeds this is reported as not estimable.
MAX_SLOPE_SE = 2.0
#: Newton iterations before a fit is declared non-convergent.
MAX_ITER = 100
#: Why a fit has no coefficients when the covariates separate the outcomes.
SEPARATED = "fitted probabilities of 0 or 1 (the data are separated)"


@dataclass(frozen=True)
class GlmFit:
    """A logistic regression fit: coefficients, their covariance, and what went wrong."""

    coef: np.ndarray
    cov: np.ndarray
    problem: str | None  # None, or why the coefficients are not to be trusted


def logistic_glm(design: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None) -> GlmFit:
    """Maximum likelihood ``logit P(y) = design @ coef + offset`` by Newton-Raphson.

    Each step is halved until the log-likelihood does not decrease; convergence means a
    relative log-likelihood change below 1e-12 and steps below 1e-10. Reports
    ``problem`` (with NaN coefficients) when the fit does not converge in
    :data:`MAX_ITER` iterations or fitted probabilities reach 0 or 1 (separation).

    Where the data allow a fit it is statsmodels' ``GLM(family=Binomial())`` to 1e-6
    (``tests/modeling/test_validation.py`` compares them). It is kept instead of
    statsmodels because of what statsmodels 0.15 returns when they do not: on ``y = 0 0 1 1``,
    ``x = 0 1 2 3`` (complete separation) a slope of 41.3 (SE 25,953) with
    ``converged=True`` and only a ``PerfectSeparationWarning``; on ``x = 0 1 1 3``
    (quasi-complete) 20.1 (SE 14,240), ``converged=True`` and no warning at all. A page
    would show such a number as a calibration slope; here it is NaN with the reason. (And
    statsmodels is a test-only dependency: importing it took 5.8 s on the loaded machine.)
    """
    design = np.asarray(design, dtype=float)
    y = np.asarray(y, dtype=float)
    offset = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=float)
    k = design.shape[1]

    # for outcomes of 0 and 1, log_expit(+-eta) is the same sum as y log p + (1 - y) log(1 - p),
    # term for term and bit for bit (x + 0 * z = x), with half the logarithms
    sign = 2 * y - 1 if np.all((y == 0) | (y == 1)) else None

    def loglik(b):
        eta = design @ b + offset
        if sign is not None:
            return float(np.sum(log_expit(sign * eta)))
        return float(np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta)))

    beta = np.zeros(k)
    value = loglik(beta)
    for _ in range(MAX_ITER):
        mu = expit(design @ beta + offset)
        info = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(info, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            if np.any((mu < 1e-10) | (mu > 1 - 1e-10)):  # the steps ran off towards separation
                return _failed(k, SEPARATED)
            return _failed(k, "singular information matrix (a covariate without variation)")
        t, new = 1.0, value
        while t > 1e-10:
            trial = beta + t * step
            new = loglik(trial)
            if new >= value - 1e-12 * abs(value):
                break
            t /= 2
        else:
            return _failed(k, "Newton steps stopped improving the likelihood")
        beta = trial
        converged = abs(new - value) <= 1e-12 * (1 + abs(new)) and np.max(np.abs(t * step)) < 1e-10
        value = new
        if converged:
            break
    else:
        return _failed(k, f"did not converge in {MAX_ITER} Newton iterations")
    mu = expit(design @ beta + offset)
    if np.any((mu < 1e-10) | (mu > 1 - 1e-10)):
        return _failed(k, SEPARATED)
    info = design.T @ (design * (mu * (1 - mu))[:, None])
    return GlmFit(beta, np.linalg.inv(info), None)


def _failed(k: int, why: str) -> GlmFit:
    return GlmFit(np.full(k, np.nan), np.full((k, k), np.nan), why)


def linear_predictor(p) -> np.ndarray:
    """``logit(p)``, with ``p`` clipped away from 0 and 1."""
    return logit(np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS))


@dataclass(frozen=True)
class Recalibration:
    """Calibration intercept and slope, each NaN with a reason when not estimable."""

    intercept: float
    slope: float
    intercept_problem: str | None = None
    slope_problem: str | None = None


def recalibration(y, p) -> Recalibration:
    """Calibration intercept (slope fixed at 1) and calibration slope of predictions ``p``.

    Examples
    --------
    >>> r = recalibration([0, 0, 1, 1, 0, 1, 1], [0.2, 0.4, 0.7, 0.3, 0.6, 0.8, 0.5])
    >>> round(r.intercept, 4), round(r.slope, 4)
    (0.3421, 1.174)
    """
    y = np.asarray(y, dtype=float)
    lp = linear_predictor(p)
    if y.min() == y.max():
        why = f"only one outcome class ({int(y[0])}) among {len(y)} patients"
        return Recalibration(np.nan, np.nan, why, why)
    ones = np.ones((len(y), 1))
    cil = logistic_glm(ones, y, offset=lp)
    intercept = float(cil.coef[0])
    slope, slope_problem = np.nan, _slope_problem(lp, y)
    if slope_problem is None:
        fit = logistic_glm(np.column_stack([ones, lp]), y)
        slope_problem = fit.problem
        if fit.problem is None and np.sqrt(fit.cov[1, 1]) > MAX_SLOPE_SE:
            slope_problem = (
                f"not identified: the predictions barely vary (SD of logit p "
                f"{np.std(lp):.3g}; standard error of the slope {np.sqrt(fit.cov[1, 1]):.3g})"
            )
        if slope_problem is None:
            slope = float(fit.coef[1])
    return Recalibration(intercept, slope, cil.problem, slope_problem)


def _slope_problem(lp: np.ndarray, y: np.ndarray) -> str | None:
    """(Quasi-)complete separation of the outcome by one covariate: a threshold splits the classes."""
    pos, neg = lp[y == 1], lp[y == 0]
    if np.ptp(lp) == 0:
        return "not identified: every prediction is the same"
    if neg.max() <= pos.min() or pos.max() <= neg.min():
        return "the predictions separate responders from non-responders: the slope is infinite"
    return None


@dataclass(frozen=True)
class SmoothCalibration:
    """A smoothed calibration curve on a grid of predicted risks, and its summaries."""

    grid: np.ndarray  # predicted risk
    observed: np.ndarray  # smoothed observed risk at each grid point
    lower: np.ndarray  # pointwise 95% band
    upper: np.ndarray
    ici: float
    e50: float
    e90: float
    problem: str | None = None


def smooth_calibration(y, p, grid=None, n_knots: int = 3) -> SmoothCalibration:
    """Logistic regression of ``y`` on a restricted cubic spline of ``logit(p)``.

    Falls back to a straight line in ``logit(p)`` when the predictions have fewer
    distinct values than knots; reports NaN with ``problem`` when the fit fails.
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    lp = logit(p)
    grid = np.linspace(max(p.min(), 0.01), min(p.max(), 0.99), 50) if grid is None else grid
    grid = np.asarray(grid, dtype=float)
    knots = np.unique(np.quantile(lp, np.linspace(0.1, 0.9, n_knots)))
    basis = (
        (lambda x: np.column_stack([x, rcs_basis(x, knots)]))
        if len(knots) >= 3
        else (lambda x: x[:, None])
    )
    nan = np.full(len(grid), np.nan)
    if y.min() == y.max() or np.ptp(lp) == 0:
        why = "one outcome class" if y.min() == y.max() else "every prediction is the same"
        return SmoothCalibration(grid, nan, nan, nan, np.nan, np.nan, np.nan, why)
    design = np.column_stack([np.ones(len(y)), basis(lp)])
    fit = logistic_glm(design, y)
    if fit.problem is not None:
        return SmoothCalibration(grid, nan, nan, nan, np.nan, np.nan, np.nan, fit.problem)
    at_grid = np.column_stack([np.ones(len(grid)), basis(logit(grid))])
    eta = at_grid @ fit.coef
    se = np.sqrt(np.einsum("ij,jk,ik->i", at_grid, fit.cov, at_grid))
    at_patients = expit(design @ fit.coef)
    diff = np.abs(at_patients - p)
    return SmoothCalibration(
        grid,
        expit(eta),
        expit(eta - Z * se),
        expit(eta + Z * se),
        float(np.mean(diff)),
        float(np.median(diff)),
        float(np.quantile(diff, 0.9)),
    )
