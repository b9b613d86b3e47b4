"""External validation of a registered model on a fresh SIMULATED cohort, recalibration, bad cohorts."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.special import expit, logit
from typer.testing import CliRunner

from conftest import load_benchmark, private_store
from msc_response import MscResponseWarning
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling import metrics

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model trained and registered on a SIMULATED trial, and a fresh SIMULATED cohort of 1,500."""
    from msc_response.pipelines.train import train
    from msc_response.simulator import write_simulation

    root = tmp_path_factory.mktemp("validate")
    with private_store(root, chdir=True):
        write_simulation(root / "trial", design="trial", seed=21)
        write_simulation(root / "fresh", design="trial", n_patients=1500, seed=22, h5ad_patients=0)
        config = config_from_dict({"name": "cp-validate", "model": {"repeats": 2, "bootstrap": 30}})
        with warnings.catch_warnings():  # Riley and calibration warnings: tested in test_train
            warnings.simplefilter("ignore", MscResponseWarning)
            summary = train(config, root / "trial")
        yield root, config, summary


def test_validate_reproduces_the_benchmark_fresh_auroc(setup):
    from msc_response.modeling.fit import fit
    from msc_response.pipelines.validate import validate_registered_model

    root, config, summary = setup
    bench = load_benchmark("bench_honest_validation")
    # the benchmark's computation for the same model: fit in memory, predict its fresh table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MscResponseWarning)
        result = fit(config, build_features(config, root / "trial"), simulated=True)
    fresh = bench.fresh_table(config, root / "fresh")
    expected, _ = metrics.performance(
        fresh["response"].to_numpy(dtype=int), result.fitted.predict_proba(fresh)
    )
    run = validate_registered_model(summary["model_uri"], root / "fresh", n_boot=100)
    assert run.result.values[metrics.ROC_AUC] == pytest.approx(expected[metrics.ROC_AUC], abs=1e-9)
    assert run.result.auroc.estimate == pytest.approx(expected[metrics.ROC_AUC], abs=1e-9)
    assert run.result.n == len(fresh)
    lo, hi = run.result.intervals[metrics.ROC_AUC]
    assert lo < run.result.auroc.estimate < hi
    client = MlflowClient()
    logged = client.get_run(run.run_id)
    assert logged.data.tags["model_version"] == summary["version"]
    assert logged.data.metrics["external_roc_auc"] == pytest.approx(expected[metrics.ROC_AUC])
    assert "external_brier_ci_low" in logged.data.metrics
    assert run.page.is_file() and "External validation" in run.page.read_text()
    tags = client.get_model_version("cp-validate", summary["version"]).tags
    assert any(k.startswith("external_validation.") for k in tags)


def test_recalibrate_registers_a_linked_version_that_scores(setup, tmp_path):
    from msc_response import load_model, load_study, predict

    root, config, summary = setup
    out = tmp_path / "page"
    result = runner.invoke(app, ["validate", "--model", summary["model_uri"], "--data", str(root / "fresh"),
                                 "--out", str(out), "--recalibrate"])  # fmt: skip
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    versions = client.search_model_versions("name = 'cp-validate'")
    new = max(versions, key=lambda v: int(v.version))
    assert new.tags["recalibrates"] == summary["version"]
    recal = load_model(f"models:/cp-validate/{new.version}")
    a, b = recal.spec["recalibration"]["intercept"], recal.spec["recalibration"]["slope"]
    assert (float(new.tags["recalibration_intercept"]), float(new.tags["recalibration_slope"])) == (
        pytest.approx(a, abs=1e-6),
        pytest.approx(b, abs=1e-6),
    )
    original = load_model(summary["model_uri"])
    fresh = predict(original, load_study(root / "fresh")).features.table
    old = original.fitted.predict_proba(fresh)  # not rounded
    mine = predict(recal, load_study(root / "fresh")).table
    assert mine["probability"].to_numpy() == pytest.approx(expit(a + b * logit(old)), abs=1e-6)
    scored = tmp_path / "scored.csv"
    result = runner.invoke(app, ["score", "--model", f"models:/cp-validate/{new.version}", "--data",
                                 str(root / "fresh"), "--out", str(scored), "--jobs", "1", "--explain", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(scored, dtype={"patient_id": str})
    assert table["probability"].to_numpy() == pytest.approx(
        mine["probability"].to_numpy(), abs=1e-6
    )
    assert (out / "index.html").is_file() and "Logistic recalibration" in (
        out / "index.html"
    ).read_text()


def _bad_cohorts(root: Path, tmp: Path) -> list[tuple[Path, str]]:
    from msc_response.simulator import write_simulation

    cases = []
    write_simulation(
        tmp / "baseline_only", design="trial", seed=30, baseline_only=True, h5ad_patients=0
    )
    cases.append((tmp / "baseline_only", "no patient of the cohort can be labelled"))
    no_ascites = shutil.copytree(root / "fresh", tmp / "no_ascites")
    labs = pd.read_csv(no_ascites / "labs.csv", dtype={"patient_id": str})
    labs[labs["test"] != "ascites"].to_csv(no_ascites / "labs.csv", index=False)
    cases.append((no_ascites, "needs test 'ascites'"))
    no_resp = shutil.copytree(root / "trial", tmp / "no_responders")
    labs = pd.read_csv(no_resp / "labs.csv", dtype={"patient_id": str})
    base = labs[labs["day"] <= 0]
    pd.concat([base, base[base["day"] == 0].assign(day=28)]).to_csv(
        no_resp / "labs.csv", index=False
    )
    cases.append((no_resp, "no responders among"))
    return cases


def test_validate_bad_cohorts_exit_2_and_write_nothing(setup, tmp_path):
    root, _, summary = setup
    runs_before = len(
        MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])
    )
    versions_before = len(MlflowClient().search_model_versions("name = 'cp-validate'"))
    for cohort, message in _bad_cohorts(root, tmp_path / "cohorts"):
        out = tmp_path / f"out_{cohort.name}"
        result = runner.invoke(app, ["validate", "--model", summary["model_uri"], "--data", str(cohort),
                                     "--out", str(out), "--recalibrate"])  # fmt: skip
        assert result.exit_code == 2, (cohort.name, result.output)
        assert message in result.output, (cohort.name, result.output)
        assert not out.exists()
    result = runner.invoke(
        app, ["validate", "--model", "models:/no-such-model/1", "--data", str(root / "fresh")]
    )
    assert result.exit_code == 2 and "cannot load it" in result.output
    client = MlflowClient()
    assert (
        len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
        == runs_before
    )
    assert len(client.search_model_versions("name = 'cp-validate'")) == versions_before
    assert np.isfinite(runs_before)
