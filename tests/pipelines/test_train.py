"""Training end to end on simulated data with a real MLflow store (SQLite + artifacts)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from conftest import statistical_warnings, write_study
from msc_response import tracking
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import DataError
from msc_response.features import build_features
from msc_response.pipelines.train import train
from msc_response.registry.registration import current_champion, scoring_alias
from msc_response.simulator import write_simulation as simulate

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = {"repeats": 2, "bootstrap": 20}


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)  # configure() sets it: given back after
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tracking.configure()
    return tmp_path / "mlruns"


def config(name="cp-test", **over):
    return config_from_dict({"name": name, "model": FAST, **over})


def test_train_tracks_registers_exploratory_and_serves_probabilities(trial_dir, store, tmp_path):
    with statistical_warnings("below Riley's minimum"):
        summary = train(config(), trial_dir, summary_path=tmp_path / "summary.json")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("experiment", "n_patients", "n_events", "primary_model", "validated_roc_auc",
                "validated_roc_auc_ci", "apparent_roc_auc", "baseline_validated_roc_auc",
                "gate_against_baseline", "dropped_columns", "riley_min_n", "registered_model",
                "version", "aliases", "champion_decision", "report"):  # fmt: skip
        assert key in on_disk, key
    assert Path(on_disk["report"]).is_file()  # the summary is written once the report exists
    n = len(build_features(config(), trial_dir).table)  # the default trial layout
    assert summary["n_patients"] == n and summary["simulated_data"] is True
    assert summary["exploratory"] is True and summary["riley_min_n"] > n
    # below Riley's minimum: exploratory, never champion, and the run and summary say so
    assert summary["aliases"] == ["candidate", "exploratory"]
    assert "exploratory" in summary["champion_decision"]
    assert scoring_alias("cp-test") == "exploratory"

    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    m = run.data.metrics
    assert m["validated_roc_auc_ci_low"] <= m["validated_roc_auc"] <= m["validated_roc_auc_ci_high"]
    assert "validated_calibration_slope_ci_low" in m and "validated_net_benefit_at_50" in m
    assert m["n_dropped_columns"] == 2
    assert (
        run.data.params["endpoint.score"] == "child_pugh"
        and run.data.params["model.primary"] == "logistic_rcs"
    )
    assert run.data.tags["data.simulated"] == "true" and run.data.tags["exploratory"] == "true"
    # MLflow shows the experiment in its classic machine-learning view, the run is named by
    # model, endpoint and time, and the run and the version describe themselves
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name.startswith("logistic_rcs child_pugh day 28 20")
    card = run.data.tags["mlflow.note.content"]
    version = client.get_model_version("cp-test", summary["version"])
    assert version.description == card
    assert "status **exploratory**" in card and f"n = {n} patients" in card
    auroc, (lo, hi) = summary["validated_roc_auc"], summary["validated_roc_auc_ci"]
    assert f"{auroc:.3f} (95% CI {lo:.3f} to {hi:.3f})" in card and "Intended use:" in card
    assert "SIMULATED" in card and "SIM-0" not in card
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 4
    lgbm = next(c for c in children if c.data.tags["kind"] == "lightgbm")
    assert lgbm.data.tags["optimism_corrected_roc_auc"] == "not applicable"
    assert "optimism_corrected_roc_auc" not in lgbm.data.metrics
    arts = {a.path for a in client.list_artifacts(children[0].info.run_id, "validation")}
    assert {"validation/roc_curve.png", "validation/calibration.png", "validation/decision_curve.png",
            "validation/decision_curve.csv"} <= arts  # fmt: skip
    assert "validation/oof_predictions.csv" not in arts  # patient-level: only when opted in
    # the run's figures are the report's, byte for byte (each rendered once)
    png = Path(
        client.download_artifacts(
            children[0].info.run_id, "validation/roc_curve.png", str(tmp_path)
        )
    )
    page = Path(summary["report"]).read_text()
    assert base64.b64encode(png.read_bytes()).decode() in page

    # the registered model serves probabilities from the feature table
    model = mlflow.pyfunc.load_model(f"models:/cp-test/{summary['version']}")
    fs = build_features(config(), trial_dir, labels=False)
    p = model.predict(fs.table)["probability"].to_numpy()
    assert p.shape == (n,) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, model.unwrap_python_model().fitted.predict_proba(fs.table))

    # nothing pickled, no patient id and no training row anywhere in the store
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
    (example_file,) = [f for f in files if f.name == "input_example.json"]
    example = json.loads(example_file.read_text())
    rows = pd.DataFrame(example["data"], columns=example["columns"])
    train_rows = fs.table[example["columns"]].astype(float)
    assert len(rows) == 1
    assert not (np.isclose(train_rows.to_numpy(), rows.to_numpy()).all(axis=1)).any()


def test_champion_is_revalidated_on_the_same_data_not_read_from_a_tag(tmp_path, store):
    """Above Riley's minimum: the first version beats the baseline and becomes champion; the
    same recipe again is non-inferior (difference exactly 0 on the same samples)."""
    cohort = tmp_path / "big"
    simulate(cohort, design="trial", n_patients=3000, seed=9000, fmt="parquet", h5ad_patients=0)
    cfg = config("big", model={"candidates": ["logistic_l2"], "repeats": 1, "bootstrap": 20})
    first = train(cfg, cohort)
    assert first["exploratory"] is False and first["gate_against_baseline"]["passed"]
    assert first["aliases"] == ["candidate", "champion"] and first["gate_against_champion"] is None
    client = MlflowClient()
    client.set_model_version_tag("big", first["version"], "validated_roc_auc", "0.999")  # ignored
    second = train(cfg, cohort)
    gate = second["gate_against_champion"]
    assert gate["roc_auc_difference"] == 0 and gate["roc_auc_difference_ci"] == [0, 0]
    assert gate["reference"].startswith(f"champion v{first['version']}")
    assert second["aliases"] == ["candidate", "champion"]
    assert scoring_alias("big") == "champion"


def test_only_a_missing_alias_means_no_champion(trial_dir, store):
    with pytest.raises(MlflowException):
        current_champion("never-registered")  # a registry error is not "no champion"
    with statistical_warnings():
        train(config("no-champ"), trial_dir)
    assert current_champion("no-champ") is None


def test_no_non_responders_is_an_error_and_registers_nothing(tmp_path, store):
    study = write_study(tmp_path / "s")  # P1, P2, P4 respond; P3 has no follow-up
    cfg = config("all-respond", assume={"encephalopathy": 0, "dialysis": 0})
    with pytest.raises(DataError, match="no non-responders among 3 eligible patients"):
        train(cfg, study)
    assert not MlflowClient().search_registered_models()


def test_cli_train_prints_the_table_the_intervals_and_the_warnings(
    trial_dir, tmp_path, store, monkeypatch
):
    import logging

    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")  # the CLI turns the bars off itself
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli-test\nmodel: {repeats: 2, bootstrap: 20}\n")
    handlers = list(logging.getLogger("mlflow").handlers)
    result = runner.invoke(app, ["--progress", "train", "--config", str(cfg), "--data", str(trial_dir),
                                 "--summary", str(tmp_path / "s.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "not applicable" in out and "exploratory" in out and "calibration slope" in out
    assert "warning:" in out and "below Riley's minimum sample size" in out
    assert "dropped before modelling: baseline_dialysis" in out
    # the table's headers are folded, never cut; the report's path is the last line and in the summary
    assert "…" not in result.output and "optimism-corr" in out
    report = json.loads((tmp_path / "s.json").read_text())["report"]
    assert result.stdout.rstrip().splitlines()[-1] == f"report -> {report}"
    # progress was asked for (no terminal here: plain lines); nothing of MLflow's own output
    assert "validating 4 models" in result.stderr and "done (4/4" in result.stderr
    for noise in ("Downloading artifacts", " INFO ", "Successfully registered", "Created version"):
        assert noise not in result.output, noise
    # and MLflow is as it was for whoever imports the package
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    assert MLFLOW_LOGGING_STREAM.enabled and logging.getLogger("mlflow").handlers == handlers


def test_cli_train_bad_config_key(tmp_path, store):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nmodel: {lightgbm_params: {}}\n")
    result = runner.invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2 and "unknown key 'model.lightgbm_params'" in result.output


def test_the_logged_features_have_mlflows_own_schema_missing_values_included():
    # features_dataset gives MLflow the schema it would infer (its own loop over every value
    # took 2.3 s at 100,000 patients): the same column types and "required" flags
    from mlflow.types.utils import _infer_schema

    from msc_response.registry.registration import features_dataset

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "c": np.arange(200.0)})
    X.loc[[3, 150], "b"] = np.nan
    y = (rng.random(200) < 0.4).astype(int)
    dataset = features_dataset(X, y, "schema-test")
    mlflows = _infer_schema(X.assign(response=y))
    assert dataset.schema.to_dict() == mlflows.to_dict()
    assert [c["required"] for c in dataset.schema.to_dict()] == [True, False, True, True]
    assert json.loads(dataset.to_dict()["schema"]) == {"mlflow_colspec": mlflows.to_dict()}


def test_shipped_experiments_are_valid_configs_with_a_prespecified_primary():
    from msc_response.config import load_config

    root = Path(__file__).resolve().parents[2] / "experiments"
    configs = [load_config(p) for p in root.glob("*.yaml")]
    assert {c.endpoint.score for c in configs} == {"child_pugh", "meld"}
    assert all("primary" in p.read_text() for p in root.glob("*.yaml"))


def test_train_ends_a_run_that_a_killed_training_left_running(trial_dir, store, tmp_path):
    """A SIGKILLed train leaves its run RUNNING; the next train of the experiment ends it and says so."""
    import socket

    from msc_response import processes

    client = MlflowClient()
    exp = tracking.experiment_id("cp-killed")
    tags = {tracking.TAG_HOST: socket.gethostname(), tracking.TAG_PID: "999999",
            tracking.TAG_PROCESS_START: "1"}  # fmt: skip
    assert not processes.is_running(999999, 1)
    stale = client.create_run(exp, run_name="train cp-killed", tags=tags).info.run_id
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"name": "cp-killed", "model": FAST}))
    result = runner.invoke(app, ["train", "--config", str(cfg), "--data", str(trial_dir)])
    assert result.exit_code == 0, result.output
    assert client.get_run(stale).info.status == "FAILED"
    assert f"ended as FAILED run {stale}" in result.output
    runs = client.search_runs([exp], "attributes.status = 'RUNNING'")
    assert runs == []  # the new training's runs ended FINISHED
