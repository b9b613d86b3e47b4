"""Validation that is honest at small n.

* Repeated stratified k-fold cross-validation with out-of-fold predictions (any tuning
  happens inside each training fold, so the estimate is nested).
* Bootstrap optimism correction (Harrell FE, Lee KL, Mark DB. Stat Med 1996;15:361-87;
  rms::validate): apparent performance minus the mean optimism over bootstrap refits.
* Calibration intercept and slope by logistic recalibration (Van Calster B et al.,
  J Clin Epidemiol 2016;74:167-76).
* Riley's minimum sample size for a binary outcome (Riley RD et al., BMJ 2020;368:m441).

The apparent (training) performance is computed and logged as such, never as a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit
from scipy.stats import rankdata
from sklearn.model_selection import RepeatedStratifiedKFold

_EPS = 1e-6


def roc_auc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y, dtype=bool)
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_auc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``y`` and ``p`` (same shape, 2-D), vectorised over rows."""
    ranks = rankdata(p, axis=1)
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def brier(y, p) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, slope: bool) -> np.ndarray:
    """Newton-Raphson for logit P(y) = a + b x + offset (b fixed at 0 without ``slope``)."""
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((len(x), 1))
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        mu = expit(design @ beta + offset)
        w = mu * (1 - mu) + 1e-12
        step = np.linalg.solve(
            design.T @ (design * w[:, None]) + 1e-9 * np.eye(len(beta)), design.T @ (y - mu)
        )
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def calibration(y, p) -> tuple[float, float]:
    """Calibration intercept (in the large, slope fixed at 1) and slope of logit(p)."""
    y = np.asarray(y, float)
    lp = logit(np.clip(np.asarray(p, float), _EPS, 1 - _EPS))
    intercept = _logistic_fit(lp, y, offset=lp, slope=False)[0]
    slope = _logistic_fit(lp, y, offset=np.zeros_like(lp), slope=True)[1]
    return float(intercept), float(slope)


def metrics(y, p) -> dict[str, float]:
    """AUROC, Brier score, calibration intercept and slope."""
    intercept, slope = calibration(y, p)
    return {
        "roc_auc": roc_auc(y, p),
        "brier": brier(y, p),
        "calibration_intercept": intercept,
        "calibration_slope": slope,
    }


@dataclass
class CrossValidation:
    """Out-of-fold predictions of every repeat and the metrics with their interval."""

    oof: np.ndarray  # repeats x n
    metrics: dict[str, float]
    roc_auc_ci: tuple[float, float]
    per_repeat_roc_auc: list[float] = field(default_factory=list)


def _fit_predict(make, seed: int, X_train, y_train, X_tests) -> list[np.ndarray]:
    est = make(seed)
    est.fit(X_train, y_train)
    return [est.predict_proba(Xt)[:, 1] for Xt in X_tests]


def _parallel(n_jobs: int):
    from joblib import Parallel

    # results come back in submission order, so parallel runs give the same numbers
    return Parallel(n_jobs=n_jobs, prefer="processes")


def cross_validate(
    make, X, y, *, folds: int, repeats: int, seed: int, n_boot_ci: int = 1000, n_jobs: int = 1
) -> CrossValidation:
    """Repeated stratified k-fold; ``make(seed)`` returns a fresh estimator.

    The AUROC interval is a percentile bootstrap over patients of the repeat-averaged
    out-of-fold AUROC (each resample keeps every repeat's predictions of those patients).
    """
    y = np.asarray(y, dtype=int)
    n = len(y)
    folds = int(min(folds, np.bincount(y, minlength=2).min()))
    if folds < 2:
        raise ValueError("cross-validation needs at least 2 patients in each outcome class")
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    from joblib import delayed

    X = np.asarray(
        X, dtype=float
    )  # plain arrays: sklearn's per-call DataFrame checks cost more than the fits
    oof = np.full((repeats, n), np.nan)
    splits = list(cv.split(np.zeros(n), y))
    preds = _parallel(n_jobs)(
        delayed(_fit_predict)(make, seed + i, X[train], y[train], [X[test]])
        for i, (train, test) in enumerate(splits)
    )
    for i, ((_, test), (p,)) in enumerate(zip(splits, preds, strict=True)):
        oof[i // folds, test] = p
    per_repeat = [metrics(y, oof[r]) for r in range(repeats)]
    mean = {k: float(np.mean([m[k] for m in per_repeat])) for k in per_repeat[0]}
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot_ci):
        idx = _stratified_resample(rng, y)
        aucs.append(np.nanmean(roc_auc_rows(np.broadcast_to(y[idx], (repeats, n)), oof[:, idx])))
    lo, hi = np.nanpercentile(aucs, [2.5, 97.5])
    return CrossValidation(oof, mean, (float(lo), float(hi)), [m["roc_auc"] for m in per_repeat])


def _stratified_resample(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """Bootstrap indices that keep the number of events (so every resample has both classes)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])


@dataclass
class Optimism:
    """Harrell's bootstrap: apparent, mean optimism and optimism-corrected metrics."""

    apparent: dict[str, float]
    optimism: dict[str, float]
    corrected: dict[str, float]
    n_boot: int


def bootstrap_optimism(make, X, y, *, n_boot: int, seed: int, n_jobs: int = 1) -> Optimism:
    """Optimism correction: fit on a bootstrap sample, test on it and on the original data."""
    y = np.asarray(y, dtype=int)
    X = np.asarray(X, dtype=float)
    full = make(seed)
    full.fit(X, y)
    apparent = metrics(y, full.predict_proba(X)[:, 1])
    from joblib import delayed

    rng = np.random.default_rng(seed + 1)
    samples = [_stratified_resample(rng, y) for _ in range(n_boot)]
    preds = _parallel(n_jobs)(
        delayed(_fit_predict)(make, seed + 1000 + b, X[idx], y[idx], [X[idx], X])
        for b, idx in enumerate(samples)
    )
    diffs = []
    for idx, (p_boot, p_orig) in zip(samples, preds, strict=True):
        on_boot, on_orig = metrics(y[idx], p_boot), metrics(y, p_orig)
        diffs.append({k: on_boot[k] - on_orig[k] for k in on_boot})
    optimism = {k: float(np.mean([d[k] for d in diffs])) for k in apparent}
    # for calibration the ideal is intercept 0 and slope 1: corrected = apparent - optimism too
    corrected = {k: apparent[k] - optimism[k] for k in apparent}
    return Optimism(apparent, optimism, corrected, n_boot)


def riley_min_n(
    prevalence: float,
    n_parameters: int,
    r2_cs: float | None = None,
    *,
    shrinkage: float = 0.9,
    delta: float = 0.05,
    margin: float = 0.05,
) -> dict[str, float]:
    """Minimum sample size for a binary-outcome prediction model (Riley et al., BMJ 2020).

    The largest of (1) expected shrinkage >= ``shrinkage``; (2) optimism in Nagelkerke's
    R2 <= ``delta``; (3) the overall risk estimated within +/- ``margin``.

    Parameters
    ----------
    prevalence : float
        Outcome proportion, 0-1.
    n_parameters : int
        Candidate predictor parameters.
    r2_cs : float, optional
        Anticipated Cox-Snell R2; by default 15% of its maximum (Riley's conservative choice).

    Examples
    --------
    >>> riley_min_n(0.174, 24, 0.288)["min_n"]
    662
    """
    if not 0 < prevalence < 1:
        raise ValueError(
            f"prevalence: expected a proportion strictly between 0 and 1, got {prevalence!r}"
        )
    if n_parameters < 1:
        raise ValueError(f"n_parameters: expected >= 1, got {n_parameters!r}")
    phi = prevalence
    max_r2 = 1 - np.exp(2 * (phi * np.log(phi) + (1 - phi) * np.log(1 - phi)))
    r2 = 0.15 * max_r2 if r2_cs is None else r2_cs
    n1 = n_parameters / ((shrinkage - 1) * np.log(1 - r2 / shrinkage))
    s2 = r2 / (r2 + delta * max_r2)
    n2 = n_parameters / ((s2 - 1) * np.log(1 - r2 / s2))
    n3 = (1.96 / margin) ** 2 * phi * (1 - phi)
    crit = [int(np.ceil(v - 1e-9)) for v in (n1, n2, n3)]
    return {"min_n": max(crit), "criterion_shrinkage": crit[0], "criterion_optimism": crit[1],
            "criterion_intercept": crit[2], "r2_cs": float(r2), "max_r2_cs": float(max_r2)}  # fmt: skip
