"""Validation that is honest at small n.

* Repeated stratified k-fold cross-validation with out-of-fold predictions; every model
  of one training is validated on the same splits (:class:`Splits`), and any tuning
  happens inside each training fold, so the estimate is nested. Each metric is computed
  on each repeat's out-of-fold predictions and averaged over the repeats.
* The headline AUROC is the .632+ bootstrap estimate (Efron B, Tibshirani R. JASA
  1997;92:548-60; for the AUROC Sahiner B et al., Med Phys 2008;35:1559-70): each of B
  models refit on a stratified bootstrap sample is tested on the patients that sample
  left out (out-of-bag, OOB); the mean OOB AUROC (pessimistic: ~63% of the patients
  trained it) is combined with the apparent AUROC by the .632+ weight. Its 95% interval
  is +/- 1.96 x the standard deviation of the OOB AUROCs over the replicates (which
  carries both the refitting and the test-set noise), on the logit scale so that it stays
  inside 0-1 (:func:`.metrics.wald_within`). Checked against fresh-cohort truth
  in ``benchmarks/bench_honest_validation.py`` (bias and coverage in docs/statistics/validation.md).
* Every other metric (Brier, calibration, net benefit) is the cross-validated estimate,
  with +/- 1.96 x the standard deviation of that metric over the same OOB replicates, on
  the scale that keeps it inside its range (logit for Brier, ICI, E50, E90).
* Paired comparisons of two models use the same bootstrap samples for both
  (:func:`paired_difference`).
* Bootstrap optimism correction (Harrell FE, Lee KL, Mark DB. Stat Med 1996;15:361-87;
  rms::validate) for the regression models it is valid for; for trees that memorise the
  bootstrap sample it is "not applicable" (:data:`OPTIMISM_VALID_KINDS`).
* Riley's minimum sample size for developing a model for a binary outcome (Riley RD et al.,
  BMJ 2020;368:m441), and for validating one (Riley RD et al., Stat Med 2021;40:4230-51:
  :func:`riley_validation_n`).

The apparent (training) performance is computed and reported as such, never as a result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold

from .. import processes
from ..confidence import Z
from . import metrics

#: How the headline AUROC and the intervals are computed (stated in every summary).
METHOD = (
    "AUROC: .632+ bootstrap (Efron & Tibshirani 1997), 95% interval +/- 1.96 SD of the "
    "out-of-bag AUROCs on the logit scale; other metrics: repeated stratified k-fold "
    "cross-validation (mean over repeats), 95% interval +/- 1.96 SD of the same metric out "
    "of bag, on the logit scale for those between 0 and 1"
)


#: Model kinds for which Harrell's bootstrap optimism correction is valid (penalised or
#: plain regression); a tree ensemble memorises the ~63% of patients a bootstrap sample
#: shares with the original data, so its "optimism" is underestimated.
OPTIMISM_VALID_KINDS = ("logistic",)

#: ``make(seed)`` returns a fresh, unfitted scikit-learn estimator.
MakeEstimator = Callable[[int], object]


@dataclass(frozen=True)
class Splits:
    """The repeated stratified k-fold design every model of one training shares."""

    folds: int
    repeats: int
    seed: int

    def indices(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(train, test) index pairs, repeat by repeat; identical for identical ``y``."""
        y = np.asarray(y, dtype=int)
        folds = effective_folds(self.folds, y)
        cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=self.repeats, random_state=self.seed)
        return list(cv.split(np.zeros(len(y)), y))


def effective_folds(folds: int, y: np.ndarray) -> int:
    """``folds``, or fewer when the smaller outcome class has fewer patients than folds."""
    smaller = int(np.bincount(np.asarray(y, dtype=int), minlength=2).min())
    k = min(folds, smaller)
    if k < 2:
        raise ValueError(
            f"cross-validation needs at least 2 patients in each outcome class, got {smaller!r}"
        )
    return k


def run_fits(fits: list, n_jobs: int = 1):
    """The results of ``fits`` (joblib ``delayed`` calls), in their order, as they come back
    from ``n_jobs`` worker processes (a generator: the caller may use the first while the
    workers make the rest). Every fit carries its own seed, so the numbers do not depend on
    which worker makes it, nor on ``n_jobs``."""
    return processes.parallel(n_jobs, return_as="generator")(fits)


def _fit_predict(make: MakeEstimator, seed: int, X_train, y_train, X_tests) -> list[np.ndarray]:
    est = make(seed)
    est.fit(X_train, y_train)
    return [est.predict_proba(Xt)[:, 1] for Xt in X_tests]


def _fit_predict_rows(make: MakeEstimator, seed: int, X, y, train, test) -> np.ndarray:
    """:func:`_fit_predict` on rows ``train``, for rows ``test``: the rows are taken in the worker
    (one copy of ``X`` travels to the workers, not one per fold)."""
    (p,) = _fit_predict(make, seed, X[train], y[train], [X[test]])
    return p


def out_of_fold(make: MakeEstimator, X, y, splits: Splits, *, n_jobs: int = 1) -> np.ndarray:
    """Out-of-fold probabilities, one row per repeat (``repeats x n``)."""
    fits, finish = out_of_fold_fits(make, X, y, splits)
    return finish(list(run_fits(fits, n_jobs)))


def out_of_fold_fits(make: MakeEstimator, X, y, splits: Splits):
    """The fits of :func:`out_of_fold` (``delayed`` calls, for :func:`run_fits`) and the function
    that makes their results, in order, the out-of-fold probabilities."""
    from joblib import delayed

    X = np.asarray(
        X, dtype=float
    )  # plain arrays: sklearn's DataFrame checks cost more than the fits
    y = np.asarray(y, dtype=int)
    pairs = splits.indices(y)
    folds = len(pairs) // splits.repeats
    fits = [delayed(_fit_predict_rows)(make, splits.seed + i, X, y, train, test)
            for i, (train, test) in enumerate(pairs)]  # fmt: skip

    def finish(preds: list[np.ndarray]) -> np.ndarray:
        oof = np.full((splits.repeats, len(y)), np.nan)
        for i, ((_, test), p) in enumerate(zip(pairs, preds, strict=True)):
            oof[i // folds, test] = p
        return oof

    return fits, finish


@dataclass
class Estimate:
    """Metrics averaged over the repeats of a cross-validation (or of bootstrap replicates)."""

    values: dict[str, float]
    per_repeat: list[dict[str, float]]
    problems: dict[str, str] = field(default_factory=dict)


def summarise(y, oof: np.ndarray, thresholds=()) -> Estimate:
    """Each metric on each row of ``oof``, averaged over rows.

    A metric not estimable in some rows (say, a calibration slope under separation) is the
    mean of the others and its ``problems`` entry says in how many it failed and why; NaN
    when it fails in every row.
    """
    per_repeat, reasons = [], {}
    for p in np.atleast_2d(oof):
        values, problems = metrics.performance(y, p, thresholds)
        per_repeat.append(values)
        for k, why in problems.items():
            reasons.setdefault(k, []).append(why)
    names = list(per_repeat[0])
    table = np.array([[r[k] for k in names] for r in per_repeat], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric NaN in every repeat stays NaN
        mean = np.nanmean(table, axis=0)
    problems = {
        k: f"not estimable in {len(v)} of {len(per_repeat)} repeats ({v[0]})"
        for k, v in reasons.items()
    }
    return Estimate(dict(zip(names, mean.tolist(), strict=True)), per_repeat, problems)


def stratified_resample(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
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


def _headline_metrics(y, p) -> dict[str, float]:
    """AUROC, Brier and calibration intercept/slope (what the optimism correction reports)."""
    recal = metrics.recalibration(y, p)
    return {
        metrics.ROC_AUC: metrics.roc_auc(y, p),
        metrics.BRIER: metrics.brier(y, p),
        metrics.CALIBRATION_INTERCEPT: recal.intercept,
        metrics.CALIBRATION_SLOPE: recal.slope,
    }


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
    n3 = (Z / margin) ** 2 * phi * (1 - phi)
    crit = [int(np.ceil(v - 1e-9)) for v in (n1, n2, n3)]
    return {"min_n": max(crit), "criterion_shrinkage": crit[0], "criterion_optimism": crit[1],
            "criterion_intercept": crit[2], "r2_cs": float(r2), "max_r2_cs": float(max_r2)}  # fmt: skip


@dataclass(frozen=True)
class ValidationSampleSize:
    """What :func:`riley_validation_n` found: the n each criterion needs, and the largest."""

    min_n: int
    criteria: dict[str, int]
    targets: dict[str, float]
    inputs: dict[str, float]

    @property
    def events(self) -> float:
        return self.min_n * self.inputs["prevalence"]


#: Riley et al. (2021)'s default target widths of the 95% intervals (pmvalsampsize's defaults).
VALIDATION_TARGETS = {
    "oe_ci_width": 0.2,
    "slope_ci_width": 0.2,
    "c_ci_width": 0.1,
    "standardised_nb_ci_width": 0.2,
}


def _se_for_width(width_of, target: float, increment: float = 1e-4) -> float:
    """The smallest standard error on a grid of ``increment`` whose interval is at least
    ``target`` wide (pmvalsampsize's search, so that its worked examples are reproduced)."""
    se = 0.0
    while width_of(se) < target:
        se += increment
    return se


def riley_validation_n(prevalence: float, c_statistic: float, *, lp=None, lp_normal=None,
                       threshold: float | None = None, sensitivity: float | None = None,
                       specificity: float | None = None, oe: float = 1.0, slope: float = 1.0,
                       targets: dict | None = None) -> ValidationSampleSize:  # fmt: skip
    """Minimum sample size to externally validate a binary-outcome model (Riley RD, Debray TPA,
    Collins GS, et al. Stat Med 2021;40:4230-51; R package pmvalsampsize).

    The largest n of four criteria, each a target width of a 95% interval
    (:data:`VALIDATION_TARGETS`):

    1. O/E (observed over expected events): ``SE(ln O/E) = sqrt((1 - phi) / (n phi))``;
    2. calibration slope: ``n = I00 / (SE^2 (I00 I11 - I01^2))`` with the Fisher information
       elements of a logistic calibration model (intercept 0, slope ``slope``) averaged over
       the distribution of the linear predictor (``lp``: observed values; or ``lp_normal``:
       (mean, SD), integrated by 200-point Gauss-Hermite quadrature instead of the
       package's simulation);
    3. C statistic: Newcombe's SE of C (the package's formula), smallest n reaching the width;
    4. standardised net benefit at ``threshold`` (needs ``sensitivity`` and ``specificity``
       there, or ``lp`` / ``lp_normal`` to compute them from, as the package does, rounded
       to 2 decimals); left out without a threshold.

    Examples
    --------
    The paper's example (heart-valve failure: prevalence 0.018, C 0.8, LP ~ N(-5, 2.5), O/E
    interval width 1): O/E 905 and C 4252, as the package's tests; calibration slope 4554
    (the package's test, from 1,000 simulated values of the LP, has 4501; 10^6 simulated
    values give 4553).

    >>> r = riley_validation_n(0.018, 0.8, lp_normal=(-5, 2.5), targets={"oe_ci_width": 1})
    >>> r.criteria["oe"], r.criteria["c_statistic"]
    (905, 4252)
    """
    t = {**VALIDATION_TARGETS, **(targets or {})}
    unknown = set(t) - set(VALIDATION_TARGETS)
    if unknown:
        raise ValueError(
            f"targets: unknown {sorted(unknown)!r}; expected some of {list(VALIDATION_TARGETS)}"
        )
    phi, c = float(prevalence), float(c_statistic)
    if not 0 < phi < 1:
        raise ValueError(
            f"prevalence: expected a proportion strictly between 0 and 1, got {prevalence!r}"
        )
    if not 0.5 <= c < 1:
        raise ValueError(f"c_statistic: expected 0.5 <= C < 1, got {c_statistic!r}")
    if (lp is None) == (lp_normal is None):
        raise ValueError(
            "give the linear predictor's distribution as exactly one of lp or lp_normal"
        )
    if lp is not None:
        x = np.asarray(lp, dtype=float)
        x = x[np.isfinite(x)]
        weights = np.full(len(x), 1 / len(x))
    else:
        mean, sd = (float(v) for v in lp_normal)
        nodes, w = np.polynomial.hermite_e.hermegauss(200)
        x, weights = mean + sd * nodes, w / w.sum()
    criteria = {}
    # 1. O/E
    se_oe = _se_for_width(
        lambda se: oe * (np.exp(1.96 * se) - np.exp(-1.96 * se)), t["oe_ci_width"]
    )
    criteria["oe"] = int(np.ceil((1 - phi) / (phi * se_oe**2)))
    # 2. calibration slope (information of logit P = 0 + slope x LP)
    eta = slope * x
    v = np.exp(eta) / (1 + np.exp(eta)) ** 2
    i00, i01, i11 = (float(np.sum(weights * v * x**k)) for k in (0, 1, 2))
    se_slope = t["slope_ci_width"] / (2 * 1.96)
    criteria["calibration_slope"] = int(np.ceil(i00 / (se_slope**2 * (i00 * i11 - i01**2))))

    # 3. C statistic
    def c_width(n: int) -> float:  # decreasing in n
        h = n / 2 - 1
        return (
            2
            * 1.96
            * np.sqrt(
                c
                * (1 - c)
                * (1 + h * (1 - c) / (2 - c) + h * c / (1 + c))
                / (n**2 * phi * (1 - phi))
            )
        )

    low, high = 1, 2
    while c_width(high) > t["c_ci_width"]:
        low, high = high, 2 * high
    while high - low > 1:  # the smallest n whose width reaches the target lies in (low, high]
        mid = (low + high) // 2
        low, high = (low, mid) if c_width(mid) <= t["c_ci_width"] else (mid, high)
    criteria["c_statistic"] = high
    inputs = {"prevalence": phi, "c_statistic": c, "oe": float(oe), "slope": float(slope)}
    # 4. standardised net benefit
    if threshold is not None:
        th = float(threshold)
        if sensitivity is None or specificity is None:
            p = 1 / (1 + np.exp(-x))
            called = p >= th
            sensitivity = round(float(np.sum(weights * p * called) / np.sum(weights * p)), 2)
            specificity = round(
                float(np.sum(weights * (1 - p) * ~called) / np.sum(weights * (1 - p))), 2
            )
        sens, spec = float(sensitivity), float(specificity)
        w_t = (1 - phi) / phi * th / (1 - th)
        se_nb = round(_se_for_width(lambda se: 2 * 1.96 * se, t["standardised_nb_ci_width"]), 3)
        criteria["net_benefit"] = int(np.ceil((sens * (1 - sens) / phi + w_t**2 * spec * (1 - spec) / (1 - phi)
                                               + w_t**2 * (1 - spec) ** 2 / (phi * (1 - phi))) / se_nb**2))  # fmt: skip
        inputs.update({"threshold": th, "sensitivity": sens, "specificity": spec})
    return ValidationSampleSize(max(criteria.values()), criteria, t, inputs)


@dataclass
class Bootstrap:
    """Out-of-bag bootstrap of one model: apparent, per-replicate OOB metrics, .632+.

    Attributes
    ----------
    apparent : dict
        Metrics of the model refit on all patients, on those patients (never a result).
    oob : list of dict
        Metrics of each replicate's model on the patients its sample left out.
    samples : list of ndarray
        The bootstrap indices of each replicate (the same for every model of a training).
    predictions : ndarray
        ``B x n``: each replicate's model's probabilities for every patient.
    apparent_predictions : ndarray
        The probabilities of the model refit on all patients.
    roc_auc_632plus, roc_auc_se, weight : float
        The .632+ AUROC, its standard error (SD of the OOB AUROCs) and the weight given
        to the mean OOB AUROC.
    optimism : Optimism or None
        Harrell's optimism correction (None where it is not valid for the model kind).
    """

    apparent: dict[str, float]
    oob: list[dict[str, float]]
    samples: list[np.ndarray]
    predictions: np.ndarray
    apparent_predictions: np.ndarray
    roc_auc_632plus: float
    roc_auc_se: float
    weight: float
    optimism: Optimism | None

    @property
    def oob_roc_auc(self) -> np.ndarray:
        return np.array([r[metrics.ROC_AUC] for r in self.oob])

    def left_out(self, b: int) -> np.ndarray:
        """Boolean mask of the patients replicate ``b`` left out."""
        return left_out_of(self.predictions.shape[1], self.samples[b])

    def oob_sd(self, metric: str) -> float:
        """Standard deviation of ``metric`` over the replicates where it is estimable."""
        values = np.array([r.get(metric, np.nan) for r in self.oob], dtype=float)
        values = values[~np.isnan(values)]
        return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def left_out_of(n: int, idx: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``n`` patients that the bootstrap sample ``idx`` left out."""
    mask = np.ones(n, dtype=bool)
    mask[idx] = False
    return mask


def bootstrap_samples(y: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Stratified bootstrap samples; each leaves out at least one patient of each class."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_boot:
        idx = stratified_resample(rng, y)
        left_out = left_out_of(len(y), idx)
        if 0 < y[left_out].sum() < left_out.sum():
            out.append(idx)
    return out


def bootstrap(
    make: MakeEstimator, X, y, *, n_boot: int, seed: int, kind: str, thresholds=(), n_jobs: int = 1
) -> Bootstrap:
    """Refit on ``n_boot`` stratified bootstrap samples; OOB metrics, .632+ AUROC, Harrell.

    Harrell's optimism is computed only for kinds in :data:`OPTIMISM_VALID_KINDS`.
    """
    fits, finish = bootstrap_fits(
        make, X, y, n_boot=n_boot, seed=seed, kind=kind, thresholds=thresholds
    )
    return finish(list(run_fits(fits, n_jobs)))


def bootstrap_fits(make: MakeEstimator, X, y, *, n_boot: int, seed: int, kind: str, thresholds=()):
    """The fits of :func:`bootstrap` (``delayed`` calls, for :func:`run_fits`) and the function that
    makes their results, in order, its :class:`Bootstrap`."""
    from joblib import delayed

    y = np.asarray(y, dtype=int)
    X = np.asarray(X, dtype=float)
    samples = bootstrap_samples(y, n_boot, seed + 1)
    harrell = kind in OPTIMISM_VALID_KINDS
    # each replicate's seed is its own (seed + 1000 + b), whichever worker runs it; the model on
    # all patients is one more fit among them (fitted here first, it kept the workers idle for
    # one fit per model: seconds at 100,000 patients)
    fits = [delayed(_fit_predict)(make, seed, X, y, [X])] + [
        delayed(_replicate)(make, seed + 1000 + b, X, y, idx, thresholds, harrell)
        for b, idx in enumerate(samples)
    ]

    def finish(done: list) -> Bootstrap:
        (p_full,), done = done[0], done[1:]
        apparent, _ = metrics.performance(y, p_full, thresholds)
        predictions = np.vstack([p for p, _, _ in done])
        oob = [metrics_ for _, metrics_, _ in done]
        oob_auc = np.array([r[metrics.ROC_AUC] for r in oob])
        estimate, weight = auc_632plus(apparent[metrics.ROC_AUC], float(np.mean(oob_auc)))
        optimism = _harrell(y, p_full, [d for _, _, d in done]) if harrell else None
        return Bootstrap(apparent, oob, samples, predictions, p_full, estimate,
                         float(np.std(oob_auc, ddof=1)), weight, optimism)  # fmt: skip

    return fits, finish


def _replicate(make: MakeEstimator, seed: int, X, y, idx, thresholds, harrell: bool):
    """One bootstrap replicate, all of it in the worker that fits it: the model refit on the
    sample ``idx``, its predictions for every patient, its metrics out of bag and (``harrell``)
    its optimism in the headline metrics."""
    (p,) = _fit_predict(make, seed, X[idx], y[idx], [X])
    left_out = left_out_of(len(y), idx)
    oob = metrics.performance(y[left_out], p[left_out], thresholds)[0]
    diff = None
    if harrell:
        on_boot, on_orig = _headline_metrics(y[idx], p[idx]), _headline_metrics(y, p)
        diff = {k: on_boot[k] - on_orig[k] for k in on_boot}
    return p, oob, diff


def auc_632plus(apparent: float, oob: float) -> tuple[float, float]:
    """The .632+ AUROC and the weight ``w`` of the OOB AUROC: ``(1 - w) apparent + w oob``.

    ``w = 0.632 / (1 - 0.368 R)`` with the relative overfitting rate
    ``R = (apparent - oob) / (apparent - 0.5)``, 0.5 being the no-information AUROC
    (R = 0 when the apparent AUROC does not exceed the OOB one, 1 when the OOB AUROC is
    at or below 0.5). Efron & Tibshirani also cap the OOB value at the no-information
    value; it is used uncapped here, so that the estimate of a useless model is not
    floored at 0.5 (measured: that keeps the bias near 0 on null data).

    Examples
    --------
    >>> [round(v, 4) for v in auc_632plus(0.9, 0.7)]
    [0.7451, 0.7745]
    """
    if apparent <= oob or apparent <= 0.5:
        r = 0.0
    elif oob <= 0.5:
        r = 1.0
    else:
        r = (apparent - oob) / (apparent - 0.5)
    w = 0.632 / (1 - 0.368 * r)
    return (1 - w) * apparent + w * oob, w


def _harrell(y, p_full, diffs: list[dict[str, float]]) -> Optimism:
    """Harrell's optimism from each replicate's ``diffs`` (its headline metrics on its own
    sample minus on the original data, :func:`_replicate`)."""
    apparent = _headline_metrics(y, p_full)
    optimism = {k: _finite_mean([d[k] for d in diffs]) for k in apparent}
    corrected = {k: apparent[k] - optimism[k] for k in apparent}
    return Optimism(apparent, optimism, corrected, len(diffs))


def _finite_mean(values) -> float:
    """The mean of the finite values; NaN when no resample could estimate the metric."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


@dataclass(frozen=True)
class Difference:
    """A paired difference of the .632+ AUROC of two models on the same bootstrap samples."""

    estimate: float
    se: float
    ci: tuple[float, float]


def paired_difference(a: Bootstrap, b: Bootstrap) -> Difference:
    """``a - b`` in .632+ AUROC, 95% interval +/- 1.96 x SD of the paired OOB differences.

    Both must come from the same samples (the same ``y``, ``n_boot`` and seed).
    """
    if len(a.samples) != len(b.samples) or not all(
        np.array_equal(s, t) for s, t in zip(a.samples, b.samples, strict=True)
    ):
        raise ValueError("paired_difference: the two bootstraps used different samples")
    diff = a.roc_auc_632plus - b.roc_auc_632plus
    se = float(np.std(a.oob_roc_auc - b.oob_roc_auc, ddof=1))
    return Difference(float(diff), se, (float(diff - Z * se), float(diff + Z * se)))
