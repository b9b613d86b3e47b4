"""Performance metrics of predicted probabilities, and their names (defined here only).

Every name the summary, the MLflow run and the CLI show comes from this module:
``PERFORMANCE`` lists the metrics of one set of predictions, :func:`net_benefit_name`
names net benefit at a threshold, :func:`reported` the prefixed forms
(``validated_roc_auc``, ``validated_roc_auc_ci_low``, ...).

* AUROC: Mann-Whitney, ties counted half.
* Brier score, and the scaled Brier score ``1 - Brier / (prevalence x (1 - prevalence))``
  (Steyerberg, Clinical Prediction Models, 2nd ed., 2019, sec. 15.2).
* Net benefit at threshold probability ``t``: ``TP/n - FP/n x t/(1-t)`` (Vickers AJ,
  Elkin EB. Med Decis Making 2006;26:565-74); treating all gives
  ``prevalence - (1 - prevalence) x t/(1-t)``, treating none 0.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy.stats import rankdata

from ..confidence import Z
from .calibration import recalibration, smooth_calibration

ROC_AUC = "roc_auc"
BRIER = "brier"
SCALED_BRIER = "scaled_brier"
CALIBRATION_INTERCEPT = "calibration_intercept"
CALIBRATION_SLOPE = "calibration_slope"
ICI = "ici"
E50 = "e50"
E90 = "e90"

#: The metrics of one set of predictions, in the order they are shown.
PERFORMANCE = (
    ROC_AUC,
    BRIER,
    SCALED_BRIER,
    CALIBRATION_INTERCEPT,
    CALIBRATION_SLOPE,
    ICI,
    E50,
    E90,
)

#: What a person reads for each metric.
LABELS = {
    ROC_AUC: "AUROC",
    BRIER: "Brier score",
    SCALED_BRIER: "scaled Brier score",
    CALIBRATION_INTERCEPT: "calibration intercept",
    CALIBRATION_SLOPE: "calibration slope",
    ICI: "ICI",
    E50: "E50",
    E90: "E90",
}

#: The values each metric can take (intervals stay inside them: :func:`wald_within`); net benefit and the
#: calibration intercept and slope are unbounded.
RANGES = {
    ROC_AUC: (0.0, 1.0),
    BRIER: (0.0, 1.0),
    SCALED_BRIER: (-np.inf, 1.0),
    ICI: (0.0, 1.0),
    E50: (0.0, 1.0),
    E90: (0.0, 1.0),
}


def wald_within(estimate: float, se: float, bounds=(-np.inf, np.inf), *,
                quantile: float = Z) -> tuple[float, float]:  # fmt: skip
    """``estimate +/- quantile x se`` on the scale that maps ``bounds`` onto the real line.

    ``(low, high)`` both finite: ``logit((x - low) / (high - low))``; only ``low`` finite:
    ``log(x - low)``; only ``high`` finite: ``log(high - x)``; neither: ``x`` itself. The
    standard error is carried to that scale by the delta method, so the interval is
    asymmetric near a bound and never leaves the range. NaN bounds when the estimate lies
    on a bound (or outside the range) or the standard error is not finite: no interval
    rather than one of width 0 or a clipped one.

    Examples
    --------
    >>> [round(v, 4) for v in wald_within(0.9, 0.05, (0.0, 1.0))]
    [0.7518, 0.9639]
    >>> [round(v, 4) for v in wald_within(0.02, 0.02, (0.0, 1.0))]
    [0.0028, 0.131]
    >>> wald_within(0.5, 0.1)
    (0.304, 0.696)
    """
    low, high = (float(b) for b in bounds)
    estimate, se = float(estimate), float(se)
    if not (np.isfinite(estimate) and np.isfinite(se) and se >= 0 and low < estimate < high):
        return float("nan"), float("nan")
    if np.isfinite(low) and np.isfinite(high):
        u = (estimate - low) / (high - low)
        half = quantile * se / ((high - low) * u * (1 - u))
        centre = special.logit(u)
        return (float(low + (high - low) * special.expit(centre - half)),
                float(low + (high - low) * special.expit(centre + half)))  # fmt: skip
    with np.errstate(
        over="ignore"
    ):  # a huge standard error: the open end of the range, as it should be
        if np.isfinite(low):
            half = quantile * se / (estimate - low)
            return float(low + (estimate - low) * np.exp(-half)), float(
                low + (estimate - low) * np.exp(half)
            )
        if np.isfinite(high):
            half = quantile * se / (high - estimate)
            return float(high - (high - estimate) * np.exp(half)), float(
                high - (high - estimate) * np.exp(-half)
            )
    return round(estimate - quantile * se, 12), round(estimate + quantile * se, 12)


#: Prefixes of reported numbers: cross-validated, apparent (on the training data; never a
#: result), and Harrell's optimism-corrected.
VALIDATED = "validated"
APPARENT = "apparent"
OPTIMISM_CORRECTED = "optimism_corrected"


def net_benefit_name(threshold: float) -> str:
    """``net_benefit_at_30`` for threshold 0.30 (whole percent; 0.125 gives ``net_benefit_at_12.5``)."""
    pct = round(100 * float(threshold), 6)
    return f"net_benefit_at_{pct:g}"


def label(name: str) -> str:
    """What a person reads for a metric name, on every page, console line and warning.

    The threshold is a probability as the config writes it, with two decimals at least
    (the operating point says "at threshold 0.50" too).

    Examples
    --------
    >>> label("net_benefit_at_30"), label("net_benefit_at_12.5"), label("brier")
    ('net benefit at threshold 0.30', 'net benefit at threshold 0.125', 'Brier score')
    """
    if name.startswith("net_benefit_at_"):
        threshold = float(name.removeprefix("net_benefit_at_")) / 100
        shown = f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"
        return f"net benefit at threshold {shown}"
    return LABELS.get(name, name.replace("_", " "))


def reported(prefix: str, metric: str, part: str | None = None) -> str:
    """``reported("validated", "roc_auc", "ci_low")`` -> ``validated_roc_auc_ci_low``."""
    return f"{prefix}_{metric}" + (f"_{part}" if part else "")


def roc_auc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class."""
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
    """Mean squared difference between probability and outcome."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def scaled_brier(y, p) -> float:
    """``1 - Brier / Brier of predicting the prevalence``: 0 no better than the prevalence, 1 perfect."""
    prevalence = float(np.mean(y))
    reference = prevalence * (1 - prevalence)
    return float("nan") if reference == 0 else 1 - brier(y, p) / reference


def predicted_responder(p, threshold: float) -> np.ndarray:
    """1 where the probability ``p`` is at least ``threshold`` (the ``predicted_response`` of
    ``score``, and the yes/no call whose sensitivity, PPV, ... the reports give), else 0."""
    threshold = float(threshold)
    if not 0 < threshold < 1:
        raise ValueError(
            f"threshold: expected a probability strictly between 0 and 1, got {threshold!r}"
        )
    return (np.asarray(p, dtype=float) >= threshold).astype(int)


def net_benefit(y, p, thresholds) -> np.ndarray:
    """Net benefit of treating patients with ``p >= t``, for each threshold ``t``."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    treat = p[None, :] >= t[:, None]
    tp = (treat & y[None, :]).sum(axis=1)
    fp = (treat & ~y[None, :]).sum(axis=1)
    return tp / len(y) - fp / len(y) * t / (1 - t)


def net_benefit_treat_all(y, thresholds) -> np.ndarray:
    """Net benefit of treating everyone, for each threshold."""
    prevalence = float(np.mean(y))
    t = np.asarray(thresholds, dtype=float)
    return prevalence - (1 - prevalence) * t / (1 - t)


def performance(y, p, thresholds=()) -> tuple[dict[str, float], dict[str, str]]:
    """Every metric of :data:`PERFORMANCE` and net benefit at ``thresholds``.

    Returns the numbers and, for each metric that is NaN because it cannot be estimated
    here, the reason (separation, predictions without spread, ...).
    """
    recal = recalibration(y, p)
    smooth = smooth_calibration(y, p)
    values = {
        ROC_AUC: roc_auc(y, p),
        BRIER: brier(y, p),
        SCALED_BRIER: scaled_brier(y, p),
        CALIBRATION_INTERCEPT: recal.intercept,
        CALIBRATION_SLOPE: recal.slope,
        ICI: smooth.ici,
        E50: smooth.e50,
        E90: smooth.e90,
    }
    for t, nb in zip(thresholds, net_benefit(y, p, thresholds), strict=True):
        values[net_benefit_name(t)] = float(nb)
    problems = {}
    if recal.intercept_problem:
        problems[CALIBRATION_INTERCEPT] = recal.intercept_problem
    if recal.slope_problem:
        problems[CALIBRATION_SLOPE] = recal.slope_problem
    if smooth.problem:
        problems.update(dict.fromkeys((ICI, E50, E90), f"smoothed calibration: {smooth.problem}"))
    return values, problems
