"""The training summary: every reported number with its interval, JSON-safe.

Names come from :mod:`.metrics` (``validated_<metric>``, ``validated_<metric>_ci``), so
the summary, the MLflow run and the CLI say the same thing. A statistic that is not
valid for a model (Harrell's optimism correction for trees) is the string
:data:`NOT_APPLICABLE`, never a number; a metric that could not be estimated is None
with its reason under ``problems``.
"""

from __future__ import annotations

import math

from . import metrics, validation
from .metrics import APPARENT, OPTIMISM_CORRECTED, VALIDATED, reported

NOT_APPLICABLE = "not applicable"


def _num(v: float, digits: int = 4):
    return (
        None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)
    )


def model_numbers(mv) -> dict:
    """The reported numbers of one :class:`~msc_response.modeling.fit.ModelValidation`."""
    est, ci = mv.estimates(), mv.intervals()
    out: dict = {"role": mv.spec.role}
    for name, value in est.items():
        out[reported(VALIDATED, name)] = _num(value)
        out[reported(VALIDATED, name, "ci")] = [_num(ci[name][0]), _num(ci[name][1])]
    opt = mv.optimism
    out[reported(OPTIMISM_CORRECTED, metrics.ROC_AUC)] = (
        NOT_APPLICABLE if opt is None else _num(opt.corrected[metrics.ROC_AUC])
    )
    out[reported(OPTIMISM_CORRECTED, metrics.CALIBRATION_SLOPE)] = (
        NOT_APPLICABLE if opt is None else _num(opt.corrected[metrics.CALIBRATION_SLOPE])
    )
    out[reported(APPARENT, metrics.ROC_AUC)] = _num(mv.bootstrap.apparent[metrics.ROC_AUC])
    out["problems"] = dict(mv.problems)
    return out


def training_summary(result) -> dict:
    """The summary of a :class:`~msc_response.modeling.fit.TrainingResult` (before registering)."""
    config = result.config
    y = result.y
    primary = result.primary
    numbers = model_numbers(primary)
    comparison = result.baseline_comparison
    roles = {}
    for name, mv in result.models.items():
        roles[name] = {**model_numbers(mv), "status": result.status(name)}
    summary = {
        "experiment": config.name,
        "simulated_data": result.simulated,
        "n_patients": len(y),
        "n_events": int(y.sum()),
        "patient_flow": result.features.flow,
        "primary_model": config.model.primary,
        "exploratory_models": [n for n, r in roles.items() if r["status"] == "exploratory"],
        **{k: v for k, v in numbers.items() if k not in ("role", "problems")},
        "best_baseline": comparison.reference if comparison else None,
        "baseline_validated_roc_auc": _num(result.models[comparison.reference].roc_auc)
        if comparison
        else None,
        "gate_against_baseline": comparison.to_dict() if comparison else None,
        "net_benefit_thresholds": list(result.plan.thresholds),
        "models": roles,
        "feature_columns": list(result.feature_columns),
        "dropped_columns": dict(result.dropped_columns),
        "riley_min_n": result.riley["min_n"],
        "riley": {k: _num(v) if isinstance(v, float) else v for k, v in result.riley.items()},
        "riley_parameters": len(result.feature_columns),
        "exploratory": result.below_riley,
        "validation": {
            "method": validation.METHOD,
            "folds": result.plan.folds,
            "repeats": result.plan.repeats,
            "bootstrap": result.plan.n_boot,
            "seed": result.plan.seed,
        },
        "warnings": list(result.warnings),
    }
    return summary
