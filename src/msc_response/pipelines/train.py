"""Training: ``train`` = :func:`~msc_response.modeling.fit.fit` + :func:`~msc_response.registry.registration.log_and_register`.

Validate every candidate and baseline honestly and refit the pre-specified primary model
(in memory, :mod:`msc_response.modeling.fit`), then track and register it and apply the promotion gate
(:mod:`msc_response.registry`, :mod:`msc_response.modeling.gate`).
"""

from __future__ import annotations

from pathlib import Path

from .. import progress, tracking
from ..config import ExperimentConfig
from ..features import build_features
from ..io import write_json
from ..modeling.fit import TrainingResult, fit
from ..registry.registration import log_and_register
from ..study import load_study
from .benefit import benefit_metrics, benefit_summary, check_benefit_allowed
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
    ConfigError
        A ``benefit`` section on a study not known to be randomised (nothing is read or
        written then).
    DataError
        Bad input data (bad rows too, unless ``exclude_bad_patients``: then those patients
        are excluded with the reason in the flow), or an endpoint with no responders or no
        non-responders (nothing is logged or registered then).
    """
    data_dir = Path(config.data if data_dir is None else data_dir)
    check_benefit_allowed(config, data_dir)  # before anything is built or written
    study = load_study(data_dir, config.singlecell)
    with progress.task(f"building features from {data_dir}"):
        features = build_features(
            config, study, labels=True, bad_rows="exclude" if exclude_bad_patients else "error"
        )
    result = fit(config, features)
    benefit, validation = (
        benefit_summary(config, features, study.patients) if config.benefit else ({}, None)
    )
    with progress.task("logging to MLflow and registering the model"):
        summary = log_and_register(result, data_dir=data_dir, root=root)
    summary.update(benefit)
    if benefit:  # aggregates only, on the training run
        client = tracking.client(root)
        for key, value in benefit_metrics(benefit).items():
            client.log_metric(summary["run_id"], key, value)
        client.set_tag(summary["run_id"], "mx1_verdict", benefit["mx1_verdict"])
    with progress.task("writing the report"):
        # the study read above (reading it again took seconds at 100,000 patients)
        report = publish_training_report(result, features, study, summary, root=root,
                                         benefit=validation, data_dir=data_dir)  # fmt: skip
    summary["report"] = str(report)
    if summary_path is not None:  # once the report exists, so the summary names it
        write_json(summary, summary_path)
    return summary
