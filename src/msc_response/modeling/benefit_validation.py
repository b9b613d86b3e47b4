"""Validation for benefit on randomised data: ATE, calibration and discrimination for benefit,
and the MX1+ x treatment interaction. Numbers only (drawing lives in reporting).

* **ATE**: the difference of response proportions (MSC minus control) with the Newcombe
  hybrid score interval (Newcombe RG, Stat Med 1998;17:873-90, method 10: Wilson
  intervals of each arm combined), which keeps its coverage at phase II sizes where the
  Wald interval does not.
* **Predicted benefit** is cross-fitted (K folds stratified by arm and outcome): each
  patient's benefit comes from a model that did not see them, so the groups and
  concordance below are not the apparent (training) ones.
* **Observed vs predicted benefit by group** (quarters of predicted benefit, of MX1+, of
  baseline risk): the observed risk difference in the group with its Newcombe interval,
  beside the mean predicted benefit.
* **c-for-benefit** (van Klaveren D et al., J Clin Epidemiol 2018;94:59-68): treated and
  control patients are matched 1:1 on predicted benefit (optimal one-dimensional matching:
  the sum of absolute differences is minimal; every patient of the smaller arm matched);
  the observed benefit of a pair is ``y_treated - y_control`` (-1, 0, 1), its predicted
  benefit the mean of the two patients' predictions; c is the concordance of predicted
  with observed pair benefit over pairs of pairs with unequal observed benefit (ties in
  prediction count one half, as ``Hmisc::rcorr.cens``). Interval: percentile bootstrap of
  the whole procedure (:func:`bootstrap_refit`: resampled within arms, cross-fitted and
  matched afresh in each draw), not of the matched pairs with the predictions held fixed
  (``HTEPredictionMetrics::C.for.Benefit``), which leaves out the model's variability.
* **E-for-benefit** (Maas CCHM et al., 2022; ``HTEPredictionMetrics::E.for.Benefit``):
  the observed pair benefit smoothed on the predicted (local quadratic regression with
  tricube weights, span 0.75: R's ``loess`` defaults, computed directly), and the mean
  (Eavg), median (E50) and 90th percentile (E90) of ``|smoothed - predicted|`` over the
  pairs. ``HTEPredictionMetrics`` takes a pair's predicted benefit as ``p0`` of its
  control patient minus ``p1`` of its treated one (outcome unfavourable); ours is the mean
  of the two patients' own predictions (van Klaveren's definition, favourable outcome).
* **MX1+ x treatment interaction**: ``logit P(y) = a + b T + c m + d T m`` (odds-ratio
  scale, ``m`` the standardised logit of the baseline MX1+ fraction) by maximum likelihood,
  and the same linear model of ``y`` (risk-difference scale) with the HC1 sandwich
  variance. Verdict, pre-specified on the odds-ratio scale at two-sided 5%:
  ``predictive`` when the **parametric-bootstrap likelihood-ratio test** of ``d = 0``
  rejects (:func:`interaction_lr_test`); else ``prognostic`` when ``c`` differs from 0
  (Wald) in the model without interaction; else ``not shown``. The estimate of ``d`` and
  its interval stay the Wald ones. The sample size it would take to show the interaction
  with 80% power at the estimated size: ``n (z_0.975 + z_0.8)^2 / (d/se)^2``.

  Why not the Wald (or chi-square likelihood-ratio) test: at phase II sizes it calls MX1+
  predictive too often when MX1+ is only prognostic. On 500 simulated 140-patient RCTs
  under ``prognostic`` (seeds apart from the benchmark's) the Wald test rejected 0.064
  (MCSE 0.011), the chi-square LR test 0.066 and Firth's penalised LR test 0.064: the
  95th percentile of the LR statistic was 4.54, not chi-square's 3.84. Adjusting for the
  cross-fitted baseline-risk score, its interaction with treatment, a quadratic MX1+ main
  effect, or a rank or winsorised MX1+ scale did not bring it to 5% (0.058-0.076). With
  20,000 patients the interaction is 0 (log OR -0.016, SE 0.031): the excess is the
  small-sample null distribution of the statistic, not a real interaction. The
  parametric bootstrap draws that distribution at the trial's own covariates and fitted
  no-interaction model (0.046, MCSE 0.009, on the same 500 trials with 99 draws). The
  benchmark (600 RCTs of 140 patients per scenario, docs/benefit.md): 0.048 (0.009) under
  ``prognostic``, 0.065 (0.010) under ``neither`` (Wald 0.052 and 0.073 on the same
  trials); power 0.355 (0.019) under ``predictive`` (Wald 0.388). Over 2,400 trials per
  scenario (docs/benefit.md, run C): 0.039 (0.004) under ``prognostic``, 0.053 (0.005) under
  ``neither``; on 30,000 patients the four-term model is right (interaction 0, model-based
  and sandwich SEs equal, no curvature in MX1+), so why ``neither`` runs higher at 140
  patients is not known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..errors import ConfigError
from .benefit import PRIMARY, BenefitModel, check_inputs, fit_benefit_model
from .calibration import MAX_ITER, logistic_glm

LEVEL = 0.95
Z = float(stats.norm.ppf(0.5 + LEVEL / 2))
ALPHA = 0.05
POWER = 0.80
#: Parametric-bootstrap draws of the MX1+ interaction's likelihood-ratio test. With 199,
#: ``p < 0.05`` means at most 8 draws reach the observed statistic: a size of 9/200 =
#: 0.045 were the draws exchangeable with the data; the margin to 0.05 absorbs the error
#: of drawing at the fitted (not the true) no-interaction model.
INTERACTION_DRAWS = 199
VERDICTS = ("predictive", "prognostic", "not shown")
#: Why Eavg-for-benefit is reported without an interval.
EAVG_INTERVAL_NOTE = (
    "not applicable: Eavg-for-benefit, an average of absolute errors, is biased upwards in small "
    "trials, and its bootstrap percentile interval missed the true value in most simulated trials "
    "(docs/benefit.md); the estimate is an upper-biased summary of miscalibration"
)


# ----------------------------------------------------------------------------------------
# intervals


def wilson(x: float, n: float) -> tuple[float, float]:
    """Wilson score 95% interval of ``x`` successes in ``n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * np.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class RiskDifference:
    """``p1 - p0`` with its Newcombe 95% interval, and the counts behind it."""

    estimate: float
    low: float
    high: float
    x1: int
    n1: int
    x0: int
    n0: int


def risk_difference(y1, y0) -> RiskDifference:
    """Difference of proportions ``mean(y1) - mean(y0)``, Newcombe hybrid score interval."""
    x1, n1, x0, n0 = int(np.sum(y1)), len(y1), int(np.sum(y0)), len(y0)
    if n1 == 0 or n0 == 0:
        return RiskDifference(float("nan"), float("nan"), float("nan"), x1, n1, x0, n0)
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson(x1, n1)
    l0, u0 = wilson(x0, n0)
    d = p1 - p0
    low = d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return RiskDifference(float(d), float(low), float(high), x1, n1, x0, n0)


# ----------------------------------------------------------------------------------------
# matching and the metrics for benefit


def match_on_benefit(benefit, treated) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(treated_i, control_i)`` of 1:1 pairs matched on predicted benefit.

    Optimal one-dimensional matching without replacement: every patient of the smaller
    arm is matched and the sum of ``|benefit_t - benefit_c|`` is the least possible
    (dynamic programming over both arms sorted; ties broken by position, so the result
    is deterministic).
    """
    b = np.asarray(benefit, dtype=float)
    t = np.asarray(treated).astype(bool)
    it, ic = np.flatnonzero(t), np.flatnonzero(~t)
    small, large = (it, ic) if len(it) <= len(ic) else (ic, it)
    small = small[np.argsort(b[small], kind="stable")]
    large = large[np.argsort(b[large], kind="stable")]
    m, k = len(small), len(large)
    if m == 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    # cost[i, j]: best cost of matching small[:i+1] within large[:j+1], small[i] to some j' <= j
    take = np.zeros((m, k), dtype=bool)
    prev = np.zeros(k + 1)  # prev[j]: best cost for small[:i] within large[:j]
    for i in range(m):
        d = np.abs(b[small[i]] - b[large])
        cand = np.full(k, np.inf)
        cand[i : k - (m - 1 - i)] = (prev[:-1] + d)[i : k - (m - 1 - i)]
        best = np.minimum.accumulate(cand)
        take[i] = cand <= best  # small[i] matched at j (else inherited from j - 1)
        prev = np.concatenate([[np.inf], best])
    pairs = np.empty(m, dtype=int)
    j = k - 1
    for i in range(m - 1, -1, -1):
        while not take[i, j]:
            j -= 1
        pairs[i] = j
        j -= 1
    matched = large[pairs]
    return (small, matched) if len(it) <= len(ic) else (matched, small)


def concordance(predicted, observed) -> float:
    """Harrell's C of ``predicted`` against ``observed`` over pairs with unequal ``observed``
    (ties in ``predicted`` count one half), as ``Hmisc::rcorr.cens``; NaN without such pairs."""
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    levels = np.unique(o)
    conc, usable = 0.0, 0.0
    for a in range(len(levels)):
        low = np.sort(p[o == levels[a]])
        for hi_level in levels[a + 1 :]:
            high = p[o == hi_level]
            below = np.searchsorted(low, high, side="left")
            ties = np.searchsorted(low, high, side="right") - below
            conc += below.sum() + 0.5 * ties.sum()
            usable += len(high) * len(low)
    return float(conc / usable) if usable else float("nan")


def loess(x, y, span: float = 0.75, degree: int = 2) -> np.ndarray:
    """Fitted values of a local polynomial regression (R ``loess`` family gaussian, direct).

    For each point, the ``ceil(span n)`` nearest points are weighted by the tricube of
    their distance over the largest of them, and a polynomial of ``degree`` is fitted.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    q = min(n, int(np.floor(n * span + 1e-5)))
    dist = np.abs(x[:, None] - x[None, :])
    h = np.partition(dist, q - 1, axis=1)[:, q - 1]
    h = np.where(h > 0, h, 1.0)
    u = np.clip(dist / h[:, None], 0, 1)
    w = (1 - u**3) ** 3
    # weighted least squares at every point at once, from weighted moments of a
    # standardised x (conditioning): X'WX[i] = sum_j w_ij x_j^(a+b), X'Wy[i] = sum_j w_ij y_j x_j^a
    scale = x.std() or 1.0
    xs = (x - x.mean()) / scale
    powers = np.stack([xs**k for k in range(2 * degree + 1)], axis=1)
    moments = w @ powers
    ab = np.add.outer(np.arange(degree + 1), np.arange(degree + 1))
    xtwx = moments[:, ab]
    xtwy = w @ (powers[:, : degree + 1] * y[:, None])
    coef = np.linalg.solve(xtwx + 1e-12 * np.eye(degree + 1), xtwy[..., None])[..., 0]
    return np.sum(coef * powers[:, : degree + 1], axis=1)


@dataclass(frozen=True)
class EForBenefit:
    eavg: float
    e50: float
    e90: float
    calibration_in_the_large: float


def e_for_benefit(predicted, observed, smoothed=None) -> EForBenefit:
    """Eavg/E50/E90-for-benefit of matched pairs (``smoothed``: the loess curve, computed
    when not given) and calibration-in-the-large (mean observed - mean predicted)."""
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    s = loess(p, o) if smoothed is None else np.asarray(smoothed, dtype=float)
    gap = np.abs(s - p)
    return EForBenefit(float(gap.mean()), float(np.median(gap)), float(np.quantile(gap, 0.9)),
                       float(o.mean() - p.mean()))  # fmt: skip


@dataclass(frozen=True)
class MatchedPairs:
    predicted: np.ndarray  # pair predicted benefit
    observed: np.ndarray  # y_treated - y_control


def matched_pairs(benefit, treated, y) -> MatchedPairs:
    ti, ci = match_on_benefit(benefit, treated)
    b, yy = np.asarray(benefit, dtype=float), np.asarray(y, dtype=float)
    return MatchedPairs((b[ti] + b[ci]) / 2, yy[ti] - yy[ci])


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def expected_c_for_benefit(benefit, treated, p_treated, p_control) -> float:
    """The c-for-benefit a model's predicted ``benefit`` would have in expectation over the
    outcomes, given every patient's true response probability in their own arm (simulated
    truth: ``p_treated`` for treated, ``p_control`` for control patients).

    Pairs are matched as in :func:`matched_pairs`; a pair's observed benefit is -1, 0 or 1
    with probabilities from its two patients' probabilities; c is the expected number of
    concordant over usable pairs of pairs (ties in prediction are not expected: continuous
    predictions). Used to check the reported interval against the truth.
    """
    ti, ci = match_on_benefit(benefit, treated)
    b = np.asarray(benefit, dtype=float)
    pred = (b[ti] + b[ci]) / 2
    p1, p0 = np.asarray(p_treated, dtype=float)[ti], np.asarray(p_control, dtype=float)[ci]
    q = np.column_stack([(1 - p1) * p0, p1 * p0 + (1 - p1) * (1 - p0), p1 * (1 - p0)])[
        np.argsort(pred)
    ]
    below = np.cumsum(q, axis=0) - q  # summed probabilities of the pairs predicted lower
    conc = q[:, 2] * (below[:, 0] + below[:, 1]) + q[:, 1] * below[:, 0]
    disc = q[:, 0] * (below[:, 1] + below[:, 2]) + q[:, 1] * below[:, 2]
    return float(conc.sum() / (conc.sum() + disc.sum()))


def _percentile(estimate: float, draws, n_boot: int) -> Interval:
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(estimate) or len(draws) < max(10, n_boot // 2):
        return Interval(estimate, float("nan"), float("nan"))
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(estimate, float(low), float(high))


def bootstrap_refit(kind: str, X: pd.DataFrame, t, y, *, seed: int, folds: int, n_boot: int,
                    estimates: dict[str, float]) -> dict[str, Interval]:  # fmt: skip
    """c-for-benefit and Eavg-for-benefit with percentile intervals from ``n_boot`` repeats
    of the whole procedure: patients resampled within each arm, the benefit model
    cross-fitted afresh on the resample (copies of a patient kept in one fold, so no
    patient predicts itself), pairs matched afresh, both metrics recomputed.

    The predictions are refitted in every draw, so the interval carries the model's
    variability as well as the outcomes' (resampling matched pairs with the predictions
    held fixed, as ``HTEPredictionMetrics`` does, carries the outcomes' only and is too
    narrow). A draw in which a fold lacks an outcome in an arm is skipped; the interval
    is NaN when fewer than half the draws remain.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(24,)))
    arms = [np.flatnonzero(t == a) for a in (0, 1)]
    cs, es = [], []
    for b in range(n_boot):
        rows = np.concatenate([rng.choice(a, len(a)) for a in arms])
        try:
            benefit, _ = cross_fitted(kind, X.iloc[rows], t[rows], y[rows], seed + 1 + b, folds,
                                      groups=rows, risk=False)  # fmt: skip
        except ConfigError:  # a training fold without both outcomes in an arm
            continue
        pairs = matched_pairs(benefit, t[rows], y[rows])
        cs.append(concordance(pairs.predicted, pairs.observed))
        es.append(e_for_benefit(pairs.predicted, pairs.observed).eavg)
    return {
        "c_for_benefit": _percentile(estimates["c_for_benefit"], cs, n_boot),
        "eavg_for_benefit": _percentile(estimates["eavg_for_benefit"], es, n_boot),
    }


# ----------------------------------------------------------------------------------------
# the MX1+ x treatment interaction


def mx1_scale(fraction) -> np.ndarray:
    """The standardised logit of the baseline MX1+ fraction (missing: the median)."""
    f = np.asarray(fraction, dtype=float)
    f = np.where(np.isfinite(f), f, np.nanmedian(f))
    x = logit(np.clip(f, 1e-3, 1 - 1e-3))
    return (x - x.mean()) / (x.std() or 1.0)


def required_n(n: int, estimate: float, se: float) -> float:
    """Patients needed for 80% power at two-sided 5% if the effect were ``estimate``."""
    if not (np.isfinite(estimate) and np.isfinite(se)) or estimate == 0:
        return float("inf")
    zz = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)
    return float(np.ceil(n * (zz * se / estimate) ** 2))


def _wald(est, se) -> dict:
    p = float(2 * stats.norm.sf(abs(est / se))) if se > 0 else float("nan")
    return {
        "estimate": float(est),
        "low": float(est - Z * se),
        "high": float(est + Z * se),
        "se": float(se),
        "p": p,
    }


def _log_likelihood(design: np.ndarray, y: np.ndarray, coef: np.ndarray) -> np.ndarray | float:
    """Logistic log-likelihood; ``y`` and ``coef`` may hold one column per draw."""
    eta = design @ coef
    out = np.sum(y * eta - np.logaddexp(0.0, eta), axis=0)
    return float(out) if np.ndim(out) == 0 else out


def logistic_fits(design: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic fits of every column of ``Y`` (n x draws) on ``design``
    at once (Newton-Raphson from 0, all draws in step).

    Returns ``(coef, failed)``: coefficients (k x draws) and which fits failed, by the
    rules of :func:`~.calibration.logistic_glm` (no convergence in ``MAX_ITER`` steps, or
    fitted probabilities beyond 1e-10 of 0 or 1: separation). Newton's method without step
    halving converges on the logistic likelihood (concave) wherever the maximum exists;
    where it does not (separation) the coefficients run away and the fit is failed.
    """
    n, k = design.shape
    coef = np.zeros((k, Y.shape[1]))
    moving = np.ones(Y.shape[1], dtype=bool)
    singular = np.zeros(Y.shape[1], dtype=bool)
    with np.errstate(all="ignore"):
        for _ in range(MAX_ITER):
            mu = expit(design @ coef)
            info = np.einsum("ni,nb,nj->bij", design, mu * (1 - mu), design)
            score = (design.T @ (Y - mu)).T[..., None]
            try:
                step = np.linalg.solve(info, score)[..., 0].T
            except np.linalg.LinAlgError:  # a separated draw's weights underflowed to 0
                step = np.zeros_like(coef)
                for j in np.flatnonzero(moving):
                    try:
                        step[:, j] = np.linalg.solve(info[j], score[j])[:, 0]
                    except np.linalg.LinAlgError:
                        singular[j] = True
                moving &= ~singular
            step[:, ~moving] = 0.0
            coef += step
            moving &= ~(np.max(np.abs(step), axis=0) < 1e-10)
            if not moving.any():
                break
        mu = expit(design @ coef)
        failed = moving | singular | ~np.isfinite(coef).all(axis=0)
        failed |= np.any((mu < 1e-10) | (mu > 1 - 1e-10), axis=0)
    return coef, failed


def interaction_lr_test(y, design: np.ndarray, *, draws: int = INTERACTION_DRAWS,
                        seed: int = 0) -> dict:  # fmt: skip
    """Likelihood-ratio test of the last column of ``design`` (logistic), its p-value by
    parametric bootstrap.

    ``lr = 2 (l_full - l_null)``, ``l_null`` without the last column. ``draws`` outcome
    vectors are drawn from the fitted null model at the same covariates, both models
    refitted on each (all draws at once: :func:`logistic_fits`), and
    ``p = (1 + #{lr* >= lr}) / (draws + 1)`` (Davison & Hinkley 1997, eq. 4.11: a valid
    Monte Carlo test at any ``draws``). A draw whose fits fail (separation) counts as
    reaching ``lr``, which keeps the test conservative. ``p_chi2`` is the asymptotic
    chi-square(1) p-value, for comparison.
    """
    y = np.asarray(y, dtype=float)
    design = np.asarray(design, dtype=float)
    if draws < 1:
        raise ValueError(f"draws: expected a positive number of draws, got {draws!r}")
    full, null = logistic_glm(design, y), logistic_glm(design[:, :-1], y)
    if full.problem or null.problem:
        return {"lr": float("nan"), "p": float("nan"), "p_chi2": float("nan"), "draws": 0,
                "problem": full.problem or null.problem}  # fmt: skip
    lr = max(
        2 * (_log_likelihood(design, y, full.coef) - _log_likelihood(design[:, :-1], y, null.coef)),
        0.0,
    )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2401,)))
    p_null = expit(design[:, :-1] @ null.coef)
    Y = (
        (rng.random((draws, len(y))) < p_null).astype(float).T
    )  # draw by draw, as drawn one at a time
    coef_full, failed_full = logistic_fits(design, Y)
    coef_null, failed_null = logistic_fits(design[:, :-1], Y)
    with np.errstate(all="ignore"):
        lr_star = 2 * (
            _log_likelihood(design, Y, coef_full) - _log_likelihood(design[:, :-1], Y, coef_null)
        )
    reached = int(np.sum(failed_full | failed_null | ~(lr_star < lr)))
    return {
        "lr": float(lr),
        "p": (1 + reached) / (draws + 1),
        "p_chi2": float(stats.chi2.sf(lr, 1)),
        "draws": draws,
    }


def interaction_test(y, treated, mx1, *, draws: int = INTERACTION_DRAWS, seed: int = 0) -> dict:
    """The MX1+ x treatment interaction on the odds-ratio and risk-difference scales;
    the verdict from :func:`interaction_lr_test` (see the module docstring)."""
    y = np.asarray(y, dtype=float)
    t = np.asarray(treated, dtype=float)
    m = mx1_scale(mx1)
    n = len(y)
    design = np.column_stack([np.ones(n), t, m, t * m])
    fit = logistic_glm(design, y)
    main = logistic_glm(design[:, :3], y)
    # risk-difference scale: least squares with the HC1 sandwich
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    bread = np.linalg.inv(design.T @ design)
    meat = design.T @ (design * (resid**2)[:, None]) * n / (n - design.shape[1])
    cov_rd = bread @ meat @ bread
    out = {"n": n, "mx1_scale": "standardised logit of the baseline MX1+ fraction (per SD)"}
    if fit.problem or main.problem:
        out.update(verdict="not shown", problem=fit.problem or main.problem)
        return out
    log_or = _wald(fit.coef[3], np.sqrt(fit.cov[3, 3]))
    out["interaction_log_or"] = log_or
    out["interaction_or"] = {k: float(np.exp(log_or[k])) for k in ("estimate", "low", "high")}
    out["interaction_rd"] = _wald(beta[3], np.sqrt(cov_rd[3, 3]))
    out["prognostic_log_or"] = _wald(main.coef[2], np.sqrt(main.cov[2, 2]))
    out["interaction_lr"] = interaction_lr_test(y, design, draws=draws, seed=seed)
    if out["interaction_lr"]["p"] < ALPHA:
        verdict = "predictive"
    elif out["prognostic_log_or"]["p"] < ALPHA:
        verdict = "prognostic"
    else:
        verdict = "not shown"
    out["verdict"] = verdict
    out["n_needed_interaction_or"] = required_n(n, log_or["estimate"], log_or["se"])
    out["n_needed_interaction_rd"] = required_n(
        n, out["interaction_rd"]["estimate"], out["interaction_rd"]["se"]
    )
    return out


# ----------------------------------------------------------------------------------------
# the whole validation


def cross_fitted(kind: str, X: pd.DataFrame, t, y, seed: int, folds: int, *, groups=None,
                 risk: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold predicted benefit and baseline risk score (risk models; else NaN).

    Folds are stratified by arm and outcome; with ``groups`` (a bootstrap resample's
    original row numbers) the rows of a group stay in one fold. ``risk=False`` skips the
    risk score.
    """
    strata = 2 * t + y
    folds = max(2, min(folds, int(np.bincount(strata).min())))
    if groups is None:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, strata)
    else:
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = cv.split(X, strata, groups)
    benefit = np.full(len(y), np.nan)
    score = np.full(len(y), np.nan)
    for k, (train, test) in enumerate(splits):
        model = fit_benefit_model(kind, X.iloc[train], t[train], y[train], seed + k)
        benefit[test] = model.benefit(X.iloc[test])
        s = model.risk_score(X.iloc[test]) if risk else None
        if s is not None:
            score[test] = s
    return benefit, score


def group_table(groups: np.ndarray, t, y, predicted=None, truth=None) -> pd.DataFrame:
    """Observed benefit (risk difference, Newcombe interval) per group, with the mean
    predicted (and, on simulated data, the mean true) benefit."""
    rows = []
    for g in sorted(pd.unique(groups)):
        inside = groups == g
        rd = risk_difference(y[inside & (t == 1)], y[inside & (t == 0)])
        row = {"group": int(g) + 1, "n": int(inside.sum()), "n_treated": rd.n1, "n_control": rd.n0,
               "observed": rd.estimate, "low": rd.low, "high": rd.high}  # fmt: skip
        if predicted is not None:
            row["predicted"] = float(np.mean(predicted[inside]))
        if truth is not None:
            row["true"] = float(np.mean(truth[inside]))
        rows.append(row)
    return pd.DataFrame(rows)


def quartiles(values, k: int = 4) -> np.ndarray:
    """Group 0..k-1 of each value by its quantile (ties kept together by rank)."""
    r = pd.Series(values).rank(method="first").to_numpy()
    return np.minimum((k * (r - 1) / len(r)).astype(int), k - 1)


@dataclass
class BenefitValidation:
    """Everything validated for one benefit model on one randomised study."""

    kind: str
    n: int
    ate: RiskDifference
    c_for_benefit: Interval
    eavg_for_benefit: Interval
    e_for_benefit: EForBenefit
    by_predicted: pd.DataFrame
    by_mx1: pd.DataFrame | None
    by_risk: pd.DataFrame | None
    interaction: dict | None
    predicted_benefit: np.ndarray = field(repr=False)
    pairs: MatchedPairs = field(repr=False)
    #: each randomised regimen against the control arm, when the study randomised several
    #: (everything above pools them: any MSC versus standard care)
    by_regimen: dict[str, RiskDifference] | None = None

    def summary(self) -> dict:
        """JSON-safe numbers (no patient-level rows)."""
        out = {
            "benefit_model": self.kind,
            "n": self.n,
            "ate": self.ate.estimate,
            "ate_ci": [self.ate.low, self.ate.high],
            "c_for_benefit": self.c_for_benefit.estimate,
            "c_for_benefit_ci": [self.c_for_benefit.low, self.c_for_benefit.high],
            "eavg_for_benefit": self.eavg_for_benefit.estimate,
            # the refit bootstrap's percentile interval of Eavg missed the truth in most
            # simulated trials (docs/benefit.md, section 5): not reported
            "eavg_for_benefit_ci": None,
            "eavg_for_benefit_ci_note": EAVG_INTERVAL_NOTE,
            "e50_for_benefit": self.e_for_benefit.e50,
            "e90_for_benefit": self.e_for_benefit.e90,
            "calibration_for_benefit": self.by_predicted.to_dict(orient="records"),
        }
        if self.interaction is not None:
            out["mx1_interaction"] = self.interaction
            out["mx1_verdict"] = self.interaction["verdict"]
        return out


def validate_benefit(X: pd.DataFrame, treated, y, mx1=None, *, kind: str = PRIMARY, seed: int = 0,
                     folds: int = 5, n_boot: int = 200) -> BenefitValidation:  # fmt: skip
    """Validate the benefit model ``kind`` on randomised data (see the module docstring)."""
    t, yy = check_inputs(X, treated, y)
    benefit, risk = cross_fitted(kind, X, t, yy, seed, folds)
    if not np.isfinite(risk).all():  # effect models: the blind risk model for the risk groups
        _, risk = cross_fitted(PRIMARY, X, t, yy, seed, folds)
    pairs = matched_pairs(benefit, t, yy)
    estimates = {"c_for_benefit": concordance(pairs.predicted, pairs.observed),
                 "eavg_for_benefit": e_for_benefit(pairs.predicted, pairs.observed).eavg}  # fmt: skip
    boot = bootstrap_refit(kind, X, t, yy, seed=seed, folds=folds, n_boot=n_boot,
                           estimates=estimates)  # fmt: skip
    return BenefitValidation(
        kind=kind,
        n=len(yy),
        ate=risk_difference(yy[t == 1], yy[t == 0]),
        c_for_benefit=boot["c_for_benefit"],
        eavg_for_benefit=boot["eavg_for_benefit"],
        e_for_benefit=e_for_benefit(pairs.predicted, pairs.observed),
        by_predicted=group_table(quartiles(benefit), t, yy, benefit),
        by_mx1=None if mx1 is None else group_table(quartiles(mx1_scale(mx1)), t, yy, benefit),
        by_risk=group_table(quartiles(risk), t, yy, benefit),
        interaction=None if mx1 is None else interaction_test(yy, t, mx1, seed=seed),
        predicted_benefit=benefit,
        pairs=pairs,
    )


def fit_and_validate(X, treated, y, mx1=None, *, kind: str = PRIMARY, seed: int = 0, folds: int = 5,
                     n_boot: int = 200) -> tuple[BenefitModel, BenefitValidation]:  # fmt: skip
    """The benefit model refitted on every patient, and its cross-fitted validation."""
    validation = validate_benefit(
        X, treated, y, mx1, kind=kind, seed=seed, folds=folds, n_boot=n_boot
    )
    return fit_benefit_model(kind, X, treated, y, seed), validation
