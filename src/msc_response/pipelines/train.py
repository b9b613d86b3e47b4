"""Training: ``train`` = :func:`~msc_response.modeling.fit.fit` + :func:`~msc_response.registry.registration.log_and_register`.

Validate every candidate and baseline honestly and refit the pre-specified primary model
(in memory, :mod:`msc_response.modeling.fit`), then track and register it and apply the promotion gate
(:mod:`msc_response.registry`, :mod:`msc_response.modeling.gate`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import ExperimentConfig
from ..features import build_features
from ..modeling.fit import TrainingResult, fit
from ..registry.registration import log_and_register
from .report import publish_training_report

__all__ = ["TrainingResult", "fit", "log_and_register", "train"]


def train(config: ExperimentConfig, data_dir: str | Path | None = None, *, summary_path: str | Path | None = None,
          root: str | Path | None = None, exclude_bad_patients: bool = False) -> dict:  # fmt: skip
    """Build features, fit, log and register one experiment; returns the summary.

    Warns
    -----
    MscResponseWarning
        Statistical trouble (n below Riley's minimum, a metric not estimable).

    Raises
    ------
    DataError
        Bad input data (bad rows too, unless ``exclude_bad_patients``: then those patients
        are excluded with the reason in the flow), or an endpoint with no responders or no
        non-responders (nothing is logged or registered then).
    """
    data_dir = Path(config.data if data_dir is None else data_dir)
    features = build_features(
        config, data_dir, labels=True, bad_rows="exclude" if exclude_bad_patients else "error"
    )
    result = fit(config, features)
    summary = log_and_register(result, data_dir=data_dir, root=root, summary_path=summary_path)
    summary["report"] = str(publish_training_report(result, features, data_dir, summary, root=root))
    return summary
