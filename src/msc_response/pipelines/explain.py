"""``msc-response explain``: one patient of a study directory, explained by a registered model.

Features are built by the same code and the config stored with the model (as scoring
does); the explanation is :func:`msc_response.reporting.waterfall.explain_patient`; lab
values are shown in the units the site wrote (read from the labs table as written).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError, Problem
from ..io import check_outputs
from ..modeling.predict import predict
from ..registry.load import load_model
from ..reporting.waterfall import Explanation, explain_patient, site_lab_units, write_explanation
from ..study import load_study
from ..study.files import read_whole


def _raw_labs(path: Path) -> pd.DataFrame:
    """The labs table as written, by the study reader's own file reading (nothing converted)."""
    return (
        read_whole(path, "labs").select(["patient_id", "day", "test", "value", "unit"]).to_pandas()
    )


def explain_study_patient(
    model_uri: str, data: str | Path, patient_id: str, out: str | Path
) -> Explanation:
    """Explain ``patient_id`` of the study in ``data`` with the model at ``model_uri``; write ``out``.

    Raises
    ------
    ConfigError
        ``out`` is not ``.png`` or ``.html``; the model cannot be loaded.
    DataError
        The study is bad, the patient is not in it, or was excluded (with the reason).
        Nothing is written then.
    """
    if Path(out).suffix.lower() not in (".png", ".html"):
        raise ConfigError(f"out: expected a .png or .html file, got {str(out)!r}")
    check_outputs([out], inputs=[data], option="out")
    model = load_model(model_uri)
    config = model.spec.config
    study = load_study(data, config.singlecell)
    ids = study.patients["patient_id"].astype(str)
    if not (ids == patient_id).any():
        raise DataError([Problem(Path(study.files["patients"]).name, None, "patient_id",
                                 f"patient_id {patient_id!r} (--patient) is not in the study ({len(ids)} "
                                 "patients; ids are matched exactly as written)")])  # fmt: skip
    features = predict(model, study).features
    written = site_lab_units(
        _raw_labs(Path(study.files["labs"])), patient_id, config.baseline_window
    )
    expl = explain_patient(model, features, patient_id, written=written)
    write_explanation(expl, out)
    return expl
