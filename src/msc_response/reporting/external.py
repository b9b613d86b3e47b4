"""External validation numbers: a registered model's predictions on a labelled cohort it never saw.

* Discrimination: AUROC with DeLong's 95% interval (:func:`.intervals.auroc_delong`).
* Every metric of :data:`msc_response.modeling.metrics.PERFORMANCE` (Brier, scaled Brier,
  calibration intercept and slope, ICI, E50, E90) and net benefit at the config's
  thresholds, each with a 95% percentile interval over bootstrap resamples of the
  patients (plain, not stratified: the share of responders varies from resample to
  resample as it would in another cohort; a resample with one outcome class only is drawn
  again); ICI, E50 and E90 get no interval (:data:`NO_INTERVAL`). A metric that cannot be
  estimated on the cohort (separation, no spread) is NaN with its reason, and so is an
  interval when more than 5% of resamples cannot estimate it.
* The smoothed calibration curve with its pointwise band, the ROC curve with a pointwise
  bootstrap band (percentiles of the resamples' sensitivities at each false positive
  rate), and the decision curve with a bootstrap band against treating all and treating none.
* The operating point at the model's decision threshold (:mod:`.operating_point`: the 2x2
  table, sensitivity, specificity, PPV and NPV with exact intervals).
* Logistic recalibration ``logit P(y) = a + b logit(p)`` (both free), for ``--recalibrate``.

Numbers only: :mod:`msc_response.pipelines.validate` writes the page and logs to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..confidence import Z
from ..modeling import curves, metrics
from ..modeling.calibration import MAX_SLOPE_SE, linear_predictor, logistic_glm
from ..modeling.metrics import E50, E90, ICI
from .intervals import Auroc, Proportion, auroc_delong, proportion
from .operating_point import OperatingPoint, operating_point

#: Resamples that may fail to estimate a metric before its interval is withheld.
MAX_FAILED_SHARE = 0.05

#: Metrics shown without a bootstrap interval here, and why (measured by
#: ``benchmarks/bench_report_intervals.py``: the estimates are biased upwards in a small
#: cohort, and a well-calibrated model's true value, 0, lies outside every such interval).
#: The internal validation's intervals of the same metrics (+/- 1.96 SD out of bag) covered
#: 0.965-0.99 at 33 patients (``bench_honest_validation.py``) and are shown.
NO_INTERVAL = dict.fromkeys(
    (ICI, E50, E90),
    "no interval: bootstrap intervals of ICI, E50 and E90 covered the truth in only 62-82% of "
    "simulated cohorts of 33 patients and 85-95% of 100 (benchmarks/bench_report_intervals.py); "
    "read it as a description of this cohort",
)


def n_boot_for(n: int) -> int:
    """Bootstrap resamples: 1,000 at trial size, fewer for large cohorts (each costs more)."""
    return 1000 if n < 5000 else 200


@dataclass
class ExternalValidation:
    """What :func:`external_performance` measures (see the module docs)."""

    n: int
    outcome: Proportion
    auroc: Auroc
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    problems: dict[str, str]
    calibration_curve: pd.DataFrame
    decision_curve: pd.DataFrame
    n_boot: int
    mean_predicted: float
    roc_curve: pd.DataFrame
    roc_band: pd.DataFrame
    operating_point: OperatingPoint | None = None
    thresholds: tuple[float, ...] = field(default_factory=tuple)


def external_performance(
    y,
    p,
    *,
    thresholds=(),
    n_boot: int | None = None,
    seed: int = 0,
    unproven: bool = False,
    decision_threshold: float | None = None,
) -> ExternalValidation:
    """Performance of predictions ``p`` on outcomes ``y`` with intervals (see the module docs);
    the operating point at ``decision_threshold`` when given.

    The metrics of :data:`NO_INTERVAL` get none (the reason is
    in ``problems``), unless ``unproven`` (for the benchmark that measures them).

    Raises
    ------
    ValueError
        ``y`` has a single class (the caller turns it into a data error).
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    n, events = len(y), int(y.sum())
    if events in (0, n):
        raise ValueError(f"y: a single outcome class ({events} responders among {n} patients)")
    thresholds = tuple(float(t) for t in thresholds)
    values, problems = metrics.performance(y, p, thresholds)
    n_boot = n_boot_for(n) if n_boot is None else n_boot
    rng = np.random.default_rng(seed)
    grid_t = np.asarray(curves.DECISION_THRESHOLDS, dtype=float)
    boot_values, boot_nb, boot_tpr = [], [], []
    for _ in range(n_boot):
        idx = _resample(rng, y)
        v, _ = metrics.performance(y[idx], p[idx], thresholds)
        boot_values.append(v)
        boot_nb.append(metrics.net_benefit(y[idx], p[idx], grid_t))
        boot_tpr.append(curves.roc_at(y[idx], p[idx], curves.ROC_BAND_GRID))
    intervals = {}
    for name in values:
        draws = np.array([b[name] for b in boot_values], dtype=float)
        ok = np.isfinite(draws)
        if name in NO_INTERVAL and not unproven:
            if np.isfinite(values[name]):
                problems.setdefault(name, NO_INTERVAL[name])
        elif np.isfinite(values[name]) and ok.mean() >= 1 - MAX_FAILED_SHARE:
            lo, hi = np.percentile(draws[ok], [2.5, 97.5])
            intervals[name] = (float(lo), float(hi))
        elif np.isfinite(values[name]):
            problems.setdefault(name, f"no interval: {100 * (1 - ok.mean()):.0f}% of bootstrap resamples could "
                                      "not estimate it")  # fmt: skip
    auc = auroc_delong(y, p)
    intervals[metrics.ROC_AUC] = (auc.low, auc.high)
    if auc.why_no_interval:
        problems[metrics.ROC_AUC] = f"no interval: {auc.why_no_interval}"
    dc = curves.decision_curve(y, p, grid_t)
    nb = np.array(boot_nb)
    dc = dc.assign(lower=np.percentile(nb, 2.5, axis=0), upper=np.percentile(nb, 97.5, axis=0))
    curve = curves.calibration_curve(y, p)
    op = None if decision_threshold is None else operating_point(y, p, decision_threshold)
    return ExternalValidation(n, proportion(events, n), auc, values, intervals, problems, curve, dc, n_boot,
                              float(p.mean()), curves.roc_curve(y, p), curves.roc_band(boot_tpr), op,
                              thresholds)  # fmt: skip


def _resample(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """Bootstrap indices of the patients, drawn again until both outcome classes are in."""
    while True:
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(y):
            return idx


@dataclass(frozen=True)
class Recalibration:
    """``logit P(y) = intercept + slope x logit(p)``, fitted on the validation cohort."""

    intercept: float
    slope: float
    intercept_ci: tuple[float, float]
    slope_ci: tuple[float, float]


def logistic_recalibration(y, p) -> Recalibration:
    """Estimate a logistic recalibration (intercept and slope both free) with Wald intervals.

    Raises
    ------
    ValueError
        The fit is not estimable (separation, no convergence, one class, a slope not
        identified because the predictions barely vary); the message says why.
    """
    y = np.asarray(y, dtype=float)
    lp = linear_predictor(p)
    if y.min() == y.max():
        raise ValueError("cannot recalibrate: a single outcome class")
    fit = logistic_glm(np.column_stack([np.ones(len(y)), lp]), y)
    if fit.problem is not None:
        raise ValueError(f"cannot recalibrate: {fit.problem}")
    se = np.sqrt(np.diag(fit.cov))
    if se[1] > MAX_SLOPE_SE:
        raise ValueError(f"cannot recalibrate: the slope is not identified (the predictions barely vary: SD of "
                         f"logit p {np.std(lp):.3g}; standard error of the slope {se[1]:.3g})")  # fmt: skip
    a, b = (float(c) for c in fit.coef)
    return Recalibration(a, b, (a - Z * se[0], a + Z * se[0]), (b - Z * se[1], b + Z * se[1]))
