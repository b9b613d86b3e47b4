"""The Python API end to end, written like a notebook, and the command line's numbers beside it.

simulate -> build_features -> fit -> plots -> log_and_register -> load_model -> predict,
with the user's own tracking URI and matplotlib backend left as they were; the CLI on the
same (written) study gives exactly the same validation numbers and probabilities.
"""

from __future__ import annotations

import json

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import TRIAL_PATIENTS, statistical_warnings
from msc_response.cli import app
from msc_response.simulator import write_simulation

pytestmark = pytest.mark.slow
CONFIG = {
    "name": "api-notebook",
    "model": {"repeats": 2, "bootstrap": 20, "candidates": ["lightgbm", "logistic_l2"]},
}


def test_a_notebook_session_and_the_cli_agree(tmp_path, monkeypatch):
    import msc_response as msc

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)  # train writes its report under reports/ of the working directory
    (tmp_path / "nb").mkdir()
    notebook_uri = f"sqlite:///{tmp_path / 'nb' / 'mlflow.db'}"
    mlflow.set_tracking_uri(notebook_uri)  # the user's choice: used, and left as it was
    backend = matplotlib.get_backend()
    try:
        config = msc.load_config(CONFIG)
        study = msc.simulate("trial", seed=11)
        assert study.simulated and len(study.patients) == TRIAL_PATIENTS
        features = msc.build_features(config, study)
        with statistical_warnings("Riley"):
            result = msc.fit(config, features)
        assert isinstance(result, msc.TrainingResult) and result.simulated
        titles = [ax.get_title() for ax in (result.plot_roc(), result.plot_calibration(),
                                            result.plot_decision_curve())]  # fmt: skip
        assert titles == ["ROC (.632+ bootstrap)", "Calibration (cross-validated)",
                          "Decision curve (cross-validated)"]  # fmt: skip
        assert len(result.plot_shap().collections) > 0  # the beeswarm's points
        assert matplotlib.get_backend() == backend
        summary = msc.log_and_register(result)
        assert mlflow.get_tracking_uri() == notebook_uri and summary["tracking_uri"] == notebook_uri
        model = msc.load_model(summary["model_uri"])
        assert mlflow.get_tracking_uri() == notebook_uri
        predictions = msc.predict(model, study, explain=2)
        assert len(predictions.table) + len(predictions.rejected) == TRIAL_PATIENTS
    finally:
        mlflow.set_tracking_uri(None)

    # the command line on the same study, written to disk, in another store
    data = tmp_path / "trial"
    write_simulation(data, design="trial", seed=11, h5ad_patients=0)
    (tmp_path / "cli").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'cli' / 'mlflow.db'}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(CONFIG))
    runner = CliRunner()
    out = runner.invoke(app, ["train", "--config", str(cfg), "--data", str(data),
                              "--summary", str(tmp_path / "s.json")])  # fmt: skip
    assert out.exit_code == 0, out.output
    cli = json.loads((tmp_path / "s.json").read_text())
    for key in ("n_patients", "n_events", "primary_model", "validated_roc_auc", "validated_roc_auc_ci",
                "validated_brier", "riley_min_n", "dropped_columns"):  # fmt: skip
        assert cli[key] == summary[key], key
    out = runner.invoke(app, ["score", "--model", cli["model_uri"], "--data", str(data),
                              "--out", str(tmp_path / "p.csv"), "--explain", "2"])  # fmt: skip
    assert out.exit_code == 0, out.output
    scored = pd.read_csv(tmp_path / "p.csv", dtype={"patient_id": str}).set_index("patient_id")
    mine = predictions.table.set_index("patient_id")
    np.testing.assert_array_equal(scored.loc[mine.index, "probability"], mine["probability"])
    assert (scored.loc[mine.index, "feature_1"] == mine["feature_1"].astype(str)).all()
