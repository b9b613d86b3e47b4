"""Writing reports: the study report (phase of the data alone) and, later, the training report.

:func:`write_study_report` writes ``out_dir/index.html``: every section that needs only a
study and its features (see :mod:`.study_sections`), with the model card.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ExperimentConfig
from ..features import FeatureSet, features_from_study
from ..study import Study
from . import study_sections as sections
from .page import Page


def write_study_report(
    config: ExperimentConfig,
    study: Study,
    out_dir: str | Path,
    *,
    features: FeatureSet | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """The report of a study without a model; returns the path of ``index.html``.

    ``features`` default to the config's features with labels (patients with bad rows
    excluded); ``data_dir`` (the study directory) names the source and finds
    ``simulation.json``.
    """
    if features is None:
        features = features_from_study(study, config, labels=True, bad_rows="exclude")
    ctx = sections.StudyContext.build(config, study, features, data_dir)
    page = Page(f"Study report: {config.name}", simulated=study.simulated,
                subtitle=f"{len(features.table)} patients analysed; endpoint {config.endpoint.score}",
                config=config.to_dict(), feature_spec=features.feature_spec)  # fmt: skip
    sections.add_study_sections(page, ctx)
    sections.add_paper_view(page, ctx)
    sections.add_model_card(page, ctx)
    return page.write(out_dir)
