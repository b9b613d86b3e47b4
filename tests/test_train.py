"""Training end to end on simulated data with a real MLflow store (SQLite + artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import TRIAL_PATIENTS, write_study
from msc_response import tracking
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import DataError
from msc_response.features import build_features
from msc_response.modeling.train import train

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = {"repeats": 2, "bootstrap": 20}


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()  # an explicit store's folder is never created
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking.configure()
    return tmp_path / "mlruns"


def config(name="cp-test", **over):
    return config_from_dict({"name": name, "model": FAST, **over})


def test_train_tracks_registers_and_serves_probabilities(trial_dir, store, tmp_path):
    summary = train(config(), trial_dir, summary_path=tmp_path / "summary.json")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "experiment",
        "n_patients",
        "n_events",
        "chosen_model",
        "validated_roc_auc",
        "validated_roc_auc_ci",
        "apparent_roc_auc",
        "baseline_validated_roc_auc",
        "riley_min_n",
        "registered_model",
        "version",
        "aliases",
    ):
        assert key in on_disk, key
    assert summary["n_patients"] == TRIAL_PATIENTS and summary["simulated_data"] is True
    assert summary["riley_min_n"] > TRIAL_PATIENTS and any(
        "Riley" in w for w in summary["warnings"]
    )
    lo, hi = summary["validated_roc_auc_ci"]
    assert lo <= summary["validated_roc_auc"] <= hi
    assert summary["chosen_model"] in ("lightgbm", "logistic_l2")
    assert set(summary["models"]) == {
        "lightgbm",
        "logistic_l2",
        "baseline_score",
        "baseline_regimen",
    }
    assert "candidate" in summary["aliases"]
    beats = summary["validated_roc_auc"] > summary["baseline_validated_roc_auc"]
    assert ("champion" in summary["aliases"]) == beats

    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["apparent_roc_auc"] >= run.data.metrics["validated_roc_auc"] - 0.05
    assert run.data.params["endpoint.score"] == "child_pugh"
    assert run.data.params["model.seed"] == "20250238" and "git_commit" in run.data.params
    assert run.data.params["version.lightgbm"] == "4.7.0"
    assert run.data.tags["data.simulated"] == "true"
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 4
    arts = {a.path for a in client.list_artifacts(children[0].info.run_id, "validation")}
    assert {"validation/roc_curve.png", "validation/calibration.png", "validation/decision_curve.png",
            "validation/oof_predictions.csv"} <= arts  # fmt: skip

    # the registered model serves probabilities from the feature table
    model = mlflow.pyfunc.load_model(f"models:/cp-test/{summary['version']}")
    fs = build_features(config(), trial_dir, labels=False)
    p = model.predict(fs.table)["probability"].to_numpy()
    assert p.shape == (TRIAL_PATIENTS,) and ((p > 0) & (p < 1)).all()
    inner = model.unwrap_python_model()
    np.testing.assert_allclose(p, inner.fitted.predict_proba(fs.table))

    # nothing pickled, no patient id anywhere in the store
    files = [f for f in store.rglob("*") if f.is_file()]
    assert not [f for f in files if f.suffix in (".pkl", ".pickle")]
    assert any(f.name in ("model.lgb.txt", "model.skops") for f in files)
    for f in files:
        if (
            f.suffix in (".csv", ".json", ".txt", ".yaml", ".MLmodel", "")
            and f.stat().st_size < 5_000_000
        ):
            assert "SIM-0" not in f.read_text(errors="ignore"), f
    assert b"SIM-0" not in (store / "mlflow.db").read_bytes()


def test_same_data_again_is_not_promoted_over_itself(trial_dir, store):
    first = train(config("again"), trial_dir)
    second = train(config("again"), trial_dir)
    assert second["version"] != first["version"]
    assert second["validated_roc_auc"] == first["validated_roc_auc"]  # seeded: same numbers
    if "champion" in first["aliases"]:
        assert second["aliases"] == ["candidate"]
        assert "does not beat the current champion" in second["champion_decision"]


def test_no_non_responders_is_an_error_and_registers_nothing(tmp_path, store):
    study = write_study(tmp_path / "s")  # P1, P2, P4 respond; P3 has no follow-up
    cfg = config("all-respond", assume={"encephalopathy": 0, "dialysis": 0})
    with pytest.raises(DataError, match="no non-responders among 3 eligible patients"):
        train(cfg, study)
    assert not MlflowClient().search_registered_models()


def test_cli_train_bad_config_key(tmp_path, store):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nmodel: {lightgbm_params: {}}\n")
    result = runner.invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2 and "unknown key 'model.lightgbm_params'" in result.output


def test_shipped_experiments_are_valid_configs():
    from msc_response.config import load_config

    root = Path(__file__).resolve().parents[1] / "experiments"
    names = {load_config(p).endpoint.score for p in root.glob("*.yaml")}
    assert names == {"child_pugh", "meld"}
