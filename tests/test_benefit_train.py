"""Benefit at training time: refused on single-arm data, summarised on a randomised trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import private_store
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError
from msc_response.pipelines.benefit import check_benefit_allowed, study_randomised
from msc_response.simulator import write_simulation

runner = CliRunner()
FAST = {"repeats": 1, "bootstrap": 10, "candidates": ["logistic_l2"]}


def write_config(path, data, **benefit):
    path.write_text(
        yaml.safe_dump(
            {"name": "benefit-test", "data": str(data), "model": FAST, "benefit": benefit}
        )
    )
    return path


def test_a_benefit_config_on_single_arm_data_exits_2_explaining_why_and_writes_nothing(
    trial_dir, tmp_path
):
    cfg = write_config(tmp_path / "c.yaml", trial_dir)
    summary = tmp_path / "summary.json"
    with private_store(tmp_path):
        result = runner.invoke(app, ["train", "--config", str(cfg), "--summary", str(summary)])
        assert MlflowClient().get_experiment_by_name("benefit-test") is None  # nothing logged
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "randomised" in text and "single-arm trial" in text and "control arm" in text
    assert not summary.exists()


def test_randomised_comes_from_the_study_or_the_config(trial_dir, tmp_path):
    assert study_randomised(trial_dir) is None
    write_simulation(tmp_path / "rct", design="rct", n_patients=40, h5ad_patients=0)
    assert study_randomised(tmp_path / "rct") is True
    base = {"name": "b", "benefit": {}}
    check_benefit_allowed(config_from_dict(base), tmp_path / "rct")
    with pytest.raises(ConfigError, match="benefit.randomised"):
        check_benefit_allowed(
            config_from_dict({**base, "benefit": {"randomised": False}}), tmp_path / "rct"
        )
    check_benefit_allowed(config_from_dict({**base, "benefit": {"randomised": True}}), trial_dir)
    check_benefit_allowed(config_from_dict({"name": "b"}), trial_dir)  # no section: nothing asked
    with pytest.raises(ConfigError, match="benefit.primary"):
        config_from_dict({**base, "benefit": {"primary": "random_guess"}})


@pytest.mark.slow
def test_train_on_an_rct_summarises_benefit_with_intervals(tmp_path):
    data = tmp_path / "rct"
    write_simulation(data, design="rct", n_patients=300, seed=4, h5ad_patients=0)
    cfg = write_config(tmp_path / "c.yaml", data, bootstrap=50)
    summary = tmp_path / "summary.json"
    with private_store(tmp_path):
        result = runner.invoke(app, ["train", "--config", str(cfg), "--summary", str(summary)])
        assert result.exit_code == 0, result.output
        page = Path(json.loads(summary.read_text())["run_id"])  # the run the remake describes
        remade = runner.invoke(app, ["report", "--experiment", "benefit-test"])
    assert remade.exit_code == 0, remade.output
    assert (
        "Benefit over standard care"
        in (tmp_path / "reports" / "benefit-test" / page.name / "index.html").read_text()
    )
    assert "benefit (risk_constant): ATE" in result.output
    s = json.loads(summary.read_text())
    lo, hi = s["ate_ci"]
    assert lo < s["ate"] < hi and -1 <= lo and hi <= 1
    lo, hi = s["c_for_benefit_ci"]
    assert 0 <= lo <= s["c_for_benefit"] <= hi <= 1
    assert s["mx1_verdict"] in ("predictive", "prognostic", "not shown")
    inter = s["benefit"]["mx1_interaction"]
    assert (
        inter["interaction_or"]["low"]
        < inter["interaction_or"]["estimate"]
        < inter["interaction_or"]["high"]
    )
    assert len(s["benefit"]["calibration_for_benefit"]) == 4
    truth = json.loads((data / "simulation.json").read_text())["true_ate"]["true_benefit"]
    assert s["ate_ci"][0] < truth < s["ate_ci"][1]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").get_run(
        s["run_id"]
    )
    assert run.data.metrics["benefit_ate"] == pytest.approx(s["ate"])
    assert run.data.metrics["c_for_benefit_ci_low"] == pytest.approx(s["c_for_benefit_ci"][0])
    assert run.data.tags["mx1_verdict"] == s["mx1_verdict"]
    pages = list(tmp_path.glob("reports/benefit-test/*/index.html"))
    assert len(pages) == 1
    html = pages[0].read_text()
    assert (
        "Benefit over standard care (randomised comparison)" in html
        and "Is MX1+ a predictive" in html
    )


def test_score_benefit_writes_predicted_benefit_with_intervals_for_a_fresh_cohort(tmp_path):
    write_simulation(tmp_path / "rct", design="rct", n_patients=160, seed=1, h5ad_patients=0)
    write_simulation(
        tmp_path / "new", design="rct", n_patients=24, seed=2, h5ad_patients=0, baseline_only=True
    )
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rct")
    out = tmp_path / "benefit.csv"
    args = [
        "score-benefit",
        "--config",
        str(cfg),
        "--data",
        str(tmp_path / "new"),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--bootstrap", "30"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype={"patient_id": str})
    new_ids = pd.read_csv(tmp_path / "new" / "patients.csv", dtype={"patient_id": str})[
        "patient_id"
    ]
    assert table["patient_id"].tolist() == new_ids.tolist()
    assert (table["predicted_benefit_low"] <= table["predicted_benefit"]).all()
    assert (table["predicted_benefit"] <= table["predicted_benefit_high"]).all()
    np.testing.assert_allclose(
        table["predicted_benefit"],
        table["p_response_msc"] - table["p_response_standard_care"],
        atol=1e-12,
    )


def test_score_benefit_refuses_a_single_arm_training_study(trial_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", trial_dir)
    out = tmp_path / "benefit.csv"
    result = runner.invoke(
        app, ["score-benefit", "--config", str(cfg), "--data", str(trial_dir), "--out", str(out)]
    )
    assert result.exit_code == 2 and "randomised" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_score_writes_predicted_benefit_from_a_fitted_benefit_model(tmp_path):
    write_simulation(tmp_path / "rct", design="rct", n_patients=160, seed=1, h5ad_patients=0)
    write_simulation(tmp_path / "new", design="rct", n_patients=30, seed=2, h5ad_patients=0)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rct", bootstrap=0)
    saved = tmp_path / "benefit.json"
    fitted = runner.invoke(
        app, ["fit-benefit", "--config", str(cfg), "--out", str(saved), "--bootstrap", "30"]
    )
    assert fitted.exit_code == 0, fitted.output
    assert "SIM-" not in saved.read_text()  # coefficients and aggregates, no patient ids
    doc = json.loads(saved.read_text())
    assert doc["provenance"]["randomised"] is True and len(doc["refits"]) >= 20
    out, reference = tmp_path / "pred.csv", tmp_path / "reference.csv"
    with private_store(tmp_path):
        trained = runner.invoke(
            app, ["train", "--config", str(cfg), "--summary", str(tmp_path / "s.json")]
        )
        assert trained.exit_code == 0, trained.output
        uri = f"models:/benefit-test/{json.loads((tmp_path / 's.json').read_text())['version']}"
        args = ["score", "--model", uri, "--data", str(tmp_path / "new"), "--out", str(out)]
        scored = runner.invoke(app, [*args, "--benefit-model", str(saved), "--jobs", "1"])
        assert scored.exit_code == 0, scored.output
        assert "an effect, not an association" in scored.output
    # the same model as score-benefit's (same study, seed and refits): the same numbers
    again = runner.invoke(app, ["score-benefit", "--config", str(cfg), "--data", str(tmp_path / "new"),
                                "--out", str(reference), "--bootstrap", "30"])  # fmt: skip
    assert again.exit_code == 0, again.output
    table = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    ref = pd.read_csv(reference, dtype={"patient_id": str}).set_index("patient_id")
    assert len(table) > 0 and set(table.index) <= set(ref.index)
    columns = ["p_response_standard_care", "p_response_msc", "predicted_benefit",
               "predicted_benefit_low", "predicted_benefit_high"]  # fmt: skip
    np.testing.assert_allclose(table[columns], ref.loc[table.index, columns], atol=1e-9)
    summary = json.loads(out.with_name("pred.summary.json").read_text())
    assert summary["benefit_model"]["kind"] == "risk_constant"
