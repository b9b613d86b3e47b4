"""Batch scoring end to end: a model trained on simulated data scores a simulated cohort."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import private_store, statistical_warnings
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.pipelines.score import job
from msc_response.pipelines.train import train
from msc_response.registry.load import load_model, record_decision
from msc_response.simulator import write_simulation as simulate

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def registered(tmp_path_factory, trial_dir):
    """A store with one trained model (LightGBM only, so explanations are TreeSHAP)."""
    root = tmp_path_factory.mktemp("store")
    cfg = config_from_dict(
        {"name": "score-test", "model": {"repeats": 2, "bootstrap": 10, "candidates": ["lightgbm"]}}
    )
    with private_store(root):
        with statistical_warnings("Riley"):  # a trial's size: exploratory
            summary = train(cfg, trial_dir)
        screening = root / "screening"
        simulate(screening, design="screening", n_patients=300, seed=9, h5ad_patients=0)
        yield {
            "summary": summary,
            "uri": f"models:/score-test/{summary['version']}",
            "screening": screening,
            "root": root,
        }


def test_scores_every_patient_with_explanations(registered, tmp_path):
    out = tmp_path / "pred.parquet"
    summary = job.score(
        registered["uri"], registered["screening"], out, explain=3, patients_per_chunk=70
    )
    df = pd.read_parquet(out)
    assert summary["counts"] == {"patients_in_input": 300, "scored": 300, "rejected": 0}
    assert sorted(df["patient_id"]) == [f"SIM-{i:07d}" for i in range(1, 301)]
    assert df["probability"].between(0, 1).all()
    assert set(df["predicted_response"]) <= {0, 1}
    assert (df["predicted_response"] == (df["probability"] >= 0.5)).all()
    assert summary["threshold"] == 0.5  # the config's model.threshold, stored with the model
    assert summary["predicted_responders"] == int(df["predicted_response"].sum())
    assert {"feature_1", "value_1", "contribution_1", "contribution_3"} <= set(df.columns)
    assert (df["contribution_1"].abs() >= df["contribution_2"].abs()).all()
    assert (df["model_name"] == "score-test").all() and (
        df["model_version"] == registered["summary"]["version"]
    ).all()
    side = json.loads(out.with_name("pred.summary.json").read_text())
    assert set(side["input_sha256"]) == {"patients.csv", "labs.csv", "cells.csv"}
    assert side["data_simulated"] is True and side["model_trained_on_simulated_data"] is True


def test_explanations_add_up_to_the_prediction(registered):
    """Local scoring reads the model's artifacts directly; its pyfunc must agree with it."""
    import mlflow
    from scipy.special import logit

    from msc_response.features import build_features

    model = load_model(registered["uri"])
    fs = build_features(model.spec.config, registered["screening"], labels=False)
    X = fs.table[model.feature_columns]
    contrib, base = model.fitted.contributions(X)
    p = mlflow.pyfunc.load_model(registered["uri"]).predict(X)["probability"].to_numpy()
    np.testing.assert_array_equal(p, model.fitted.predict_proba(X))
    np.testing.assert_allclose(base + contrib.sum(axis=1), logit(p), atol=1e-6)
    import shap

    tree = shap.TreeExplainer(model.fitted.estimator).shap_values(X.to_numpy(dtype=float))
    tree = tree[1] if isinstance(tree, list) else tree
    np.testing.assert_allclose(contrib, tree, atol=1e-6)  # pred_contrib is exactly TreeSHAP


def test_chunking_does_not_change_results_and_output_is_reproducible(registered, tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for out, per_part in ((a, 1000), (b, 1000), (c, 37)):
        job.score(registered["uri"], registered["screening"], out, explain=2,
                      patients_per_chunk=per_part, log_to_mlflow=False)  # fmt: skip
    assert a.read_bytes() == b.read_bytes()
    da, dc = pd.read_csv(a).set_index("patient_id"), pd.read_csv(c).set_index("patient_id")
    pd.testing.assert_frame_equal(da.sort_index(), dc.sort_index())


def test_regimens_all_gives_one_probability_per_trial_arm(registered, tmp_path):
    out = tmp_path / "pred.csv"
    summary = job.score(
        registered["uri"], registered["screening"], out, regimens="all", log_to_mlflow=False
    )
    df = pd.read_csv(out)
    arms = [c for c in df.columns if c.startswith("probability_under_")]
    assert len(arms) == 6 and "not causal" in summary["note"]


def test_unscorable_patients_are_rejected_and_the_rest_scored(registered, tmp_path):
    d = tmp_path / "study"
    shutil.copytree(registered["screening"], d)
    labs = pd.read_csv(d / "labs.csv")
    labs = labs[~((labs["patient_id"] == "SIM-0000005") & (labs["day"] <= 0))]
    labs.to_csv(d / "labs.csv", index=False)
    out = tmp_path / "pred.csv"
    summary = job.score(registered["uri"], d, out, log_to_mlflow=False)
    rejected = pd.read_csv(tmp_path / "pred.rejected.csv")
    assert rejected["patient_id"].tolist() == ["SIM-0000005"]
    assert "no baseline measurement" in rejected["reason"][0]
    assert summary["counts"] == {"patients_in_input": 300, "scored": 299, "rejected": 1}


def test_bad_model_references_exit_2(registered, tmp_path):
    data = str(registered["screening"])
    for uri, message in [
        ("models:/no-such-model@champion", "no registered model 'no-such-model'"),
        # the aliases that exist are listed, and the one `make score` would use
        (
            "models:/score-test@champion",
            "alias 'champion' not found; the aliases of 'score-test' are: "
            f"candidate (version {registered['summary']['version']}), exploratory (version "
            f"{registered['summary']['version']}); `make score` would use 'exploratory'",
        ),
        ("models:/score-test/99", "cannot load it"),
    ]:
        result = runner.invoke(
            app, ["score", "--model", uri, "--data", data, "--out", str(tmp_path / "p.csv")]
        )
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert not (tmp_path / "p.csv").exists()


def test_cli_score_of_an_exploratory_model_warns_and_writes_its_status(registered, tmp_path):
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["score", "--model", "models:/score-test@exploratory", "--data",
                                 str(registered["screening"]), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert warning.startswith("WARNING: models:/score-test/") and "is EXPLORATORY" in warning
    assert "NOT validated for use" in warning and "trained on SIMULATED data" in warning
    df = pd.read_csv(out, dtype={"patient_id": str})
    assert list(df.columns[:7]) == ["patient_id", "model_name", "model_version", "model_uri",
                                    "model_status", "model_trained_on_simulated_data", "probability"]  # fmt: skip
    assert (
        set(df["model_status"]) == {"exploratory"} and df["model_trained_on_simulated_data"].all()
    )
    summary = json.loads(out.with_name("p.summary.json").read_text())
    assert summary["model_status"] == "exploratory" and summary["model_trained_on_simulated_data"]
    assert summary["warning"] == " ".join(result.stderr.split()).removeprefix("WARNING: ")
    assert "Downloading artifacts" not in result.output  # MLflow's bars are not the CLI's output


def test_model_of_another_experiment_is_refused(registered):
    from mlflow import MlflowClient

    client = MlflowClient()
    version = registered["summary"]["version"]
    src = client.get_model_version("score-test", version).source
    client.create_registered_model("other-experiment")
    mv = client.create_model_version("other-experiment", src)
    # a finished registration (its gate decision recorded), so that only the experiment is wrong
    record_decision(client, "other-experiment", mv.version, "registered by hand for this test")
    with pytest.raises(
        ConfigError, match="belongs to experiment 'score-test', not 'other-experiment'"
    ):
        load_model(f"models:/other-experiment/{mv.version}")


def test_empty_or_malformed_study_exits_2_with_no_output(registered, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "p.csv"
    with pytest.raises(DataError, match="missing from the study directory"):
        job.score(registered["uri"], empty, out, log_to_mlflow=False)
    bad = tmp_path / "bad"
    shutil.copytree(registered["screening"], bad)
    with open(bad / "labs.csv", "a") as f:
        f.write("SIM-0000003,0,albumin,38,g/dL\n")
    row = sum(1 for _ in open(bad / "labs.csv")) - 1
    with pytest.raises(DataError, match=rf"labs.csv, row {row}, column 'value'"):
        job.score(registered["uri"], bad, out, strict=True, log_to_mlflow=False)
    assert not out.exists() and not out.with_name("p.rejected.csv").exists()


def test_a_failed_run_keeps_the_previous_output(registered, tmp_path, monkeypatch):
    out = tmp_path / "p.csv"
    job.score(registered["uri"], registered["screening"], out, log_to_mlflow=False)
    before = out.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job.ChunkWriter, "close", killed)
    with pytest.raises(KeyboardInterrupt):
        job.score(registered["uri"], registered["screening"], out, log_to_mlflow=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p.csv",
        "p.rejected.csv",
        "p.summary.json",
    ]


def test_missing_test_the_model_needs_is_an_error(registered, tmp_path):
    d = tmp_path / "study"
    shutil.copytree(registered["screening"], d)
    labs = pd.read_csv(d / "labs.csv")
    labs[labs["test"] != "platelets"].to_csv(d / "labs.csv", index=False)
    model = load_model(registered["uri"])
    if "baseline_platelets" not in model.feature_columns:
        pytest.skip("the trained model does not use platelets")
    with pytest.raises(DataError, match="needs test 'platelets'"):
        job.score(registered["uri"], d, tmp_path / "p.csv", log_to_mlflow=False)


def test_unit_change_of_an_unconvertible_test_is_an_error(registered, tmp_path):
    d = tmp_path / "study"
    shutil.copytree(registered["screening"], d)
    labs = pd.read_csv(d / "labs.csv")
    labs.loc[labs["test"] == "platelets", "unit"] = "10^3/uL"
    labs.to_csv(d / "labs.csv", index=False)
    message = (
        "test 'platelets' is in '10\\^3/uL' here, but in '10\\^9/L' in the model's training data"
    )
    with pytest.raises(DataError, match=message):
        job.score(registered["uri"], d, tmp_path / "p.csv", strict=True, log_to_mlflow=False)
    summary = job.score(registered["uri"], d, tmp_path / "p.csv", log_to_mlflow=False)
    assert summary["counts"] == {"patients_in_input": 300, "scored": 0, "rejected": 300}
    assert summary["rejected_by_reason"] == {"bad data: unit differs": 300}


def test_non_number_in_a_streamed_csv_names_file_row_and_column(registered, tmp_path):
    d = tmp_path / "study"
    shutil.copytree(registered["screening"], d)
    lines = (d / "labs.csv").read_text().splitlines()
    fields = lines[5].split(",")
    fields[3] = "abc"
    lines[5] = ",".join(fields)
    (d / "labs.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.csv"
    message = "labs.csv, row 5, column 'value': value 'abc' is not a number"
    with pytest.raises(DataError, match=message):
        job.score(registered["uri"], d, out, strict=True, log_to_mlflow=False)
    assert not out.exists()
    summary = job.score(registered["uri"], d, out, log_to_mlflow=False)
    rejected = pd.read_csv(out.with_name("p.rejected.csv"), dtype=str)
    assert rejected[["patient_id", "reason"]].values.tolist() == [["SIM-0000001", message]]
    assert summary["rows_with_problems"] == {"not a number": 1}
    assert pd.read_csv(out.with_name("p.problems.csv"))["message"].tolist() == [
        "value 'abc' is not a number"
    ]


def test_workers_order_and_format_do_not_change_the_predictions(registered, tmp_path):
    """2 workers = in-process; shuffled rows (hash partitions) and Parquet give the same scores."""
    src = registered["screening"]
    kw = {"explain": 2, "patients_per_chunk": 64, "log_to_mlflow": False}
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    s1 = job.score(registered["uri"], src, one, jobs=1, **kw)
    s2 = job.score(registered["uri"], src, two, jobs=2, **kw)
    assert s1["workers"] == 1 and s2["workers"] == 2 and s2["input_grouped_by_patient"]
    assert one.read_bytes() == two.read_bytes()
    expected = pd.read_csv(one).set_index("patient_id").sort_index()
    # with explanations the probability comes from the same pass: sigmoid(base + contributions)
    plain = tmp_path / "plain.csv"
    job.score(registered["uri"], src, plain, patients_per_chunk=64, log_to_mlflow=False)
    np.testing.assert_allclose(
        pd.read_csv(plain).set_index("patient_id").sort_index()["probability"],
        expected["probability"],
        atol=1e-6,
    )

    shuffled = tmp_path / "shuffled"
    shutil.copytree(src, shuffled)
    labs = pd.read_csv(shuffled / "labs.csv")
    labs.sample(frac=1.0, random_state=0).to_csv(shuffled / "labs.csv", index=False)
    s3 = job.score(registered["uri"], shuffled, tmp_path / "s.csv", jobs=2, **kw)
    assert not s3["input_grouped_by_patient"] and "not grouped" in s3["partitioned_because"]
    got = pd.read_csv(tmp_path / "s.csv").set_index("patient_id").sort_index()
    pd.testing.assert_frame_equal(got, expected)

    as_parquet = tmp_path / "parquet"
    as_parquet.mkdir()
    for name in ("patients", "labs", "cells"):
        pd.read_csv(src / f"{name}.csv").to_parquet(as_parquet / f"{name}.parquet")
    job.score(registered["uri"], as_parquet, tmp_path / "p.csv", jobs=2, **kw)
    got = pd.read_csv(tmp_path / "p.csv").set_index("patient_id").sort_index()
    pd.testing.assert_frame_equal(got, expected)


def test_a_patient_id_repeated_in_another_chunk_is_an_error(registered, tmp_path):
    d = tmp_path / "study"
    shutil.copytree(registered["screening"], d)
    for name in ("patients", "labs", "cells"):  # patient 251 takes the id of patient 1
        df = pd.read_csv(d / f"{name}.csv")
        df.loc[df["patient_id"] == "SIM-0000251", "patient_id"] = "SIM-0000001"
        df.to_csv(d / f"{name}.csv", index=False)
    out = tmp_path / "p.csv"
    with pytest.raises(
        DataError, match=r"patients.csv, row 251, column 'patient_id': duplicate patient_id"
    ):
        job.score(registered["uri"], d, out, patients_per_chunk=50, jobs=2, log_to_mlflow=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients-per-chunk", "0"], "--patients-per-chunk: expected >= 1, got 0"),
        (["--jobs", "-1"], "--jobs: expected >= 1, got -1"),
        (["--explain", "-2"], "--explain: expected a number >= 0, got -2"),
        (["--engine", "gpu"], "'gpu' is not one of 'local', 'spark'"),
    ],
)
def test_bad_options_exit_2_before_any_work(registered, tmp_path, args, message):
    out = tmp_path / "p.csv"
    cmd = ["score", "--model", registered["uri"], "--data", str(registered["screening"])]
    result = runner.invoke(app, [*cmd, "--out", str(out), *args])
    shown = " ".join(result.output.replace("│", " ").split())  # Click's error box wraps lines
    assert result.exit_code == 2 and message in shown, result.output
    assert not out.exists()


def test_cells_from_h5ad_are_derived_once_and_scored_in_workers(registered, tmp_path):
    d = tmp_path / "h5"
    simulate(d, design="screening", n_patients=120, seed=3, h5ad_patients=4)
    (d / "cells.csv").unlink()  # MX1+ monocyte fractions come from the AnnData file only
    out = tmp_path / "p.csv"
    summary = job.score(
        registered["uri"], d, out, patients_per_chunk=50, jobs=2, log_to_mlflow=False
    )
    assert summary["counts"]["scored"] == 120 and summary["workers"] == 2
    assert "cells.h5ad" in summary["input_sha256"]


def _shapes_of(src, tmp_path, ids):
    """The same study as CSV/Parquet, grouped/shuffled, with some ids rewritten."""
    from test_intake import copy_study

    base = copy_study(src, tmp_path / "csv", ids)
    parquet = copy_study(src, tmp_path / "parquet", ids, fmt="parquet")
    shuffled = tmp_path / "shuffled"
    shutil.copytree(base, shuffled)
    labs = pd.read_csv(shuffled / "labs.csv", dtype=str, keep_default_na=False)
    labs.sample(frac=1, random_state=1).to_csv(shuffled / "labs.csv", index=False)
    return {"csv": base, "parquet": parquet, "shuffled": shuffled}


def test_one_bad_row_among_thousands_rejects_one_patient_in_every_shape(registered, tmp_path):
    ids = {"SIM-0000001": "001", "SIM-0000002": "1", "SIM-0000003": "A-001"}
    src = tmp_path / "src"
    shutil.copytree(registered["screening"], src)
    labs = pd.read_csv(src / "labs.csv", dtype=str, keep_default_na=False)
    row = int(
        np.flatnonzero((labs["patient_id"] == "SIM-0000002") & (labs["test"] == "albumin"))[0]
    )
    labs.loc[row, "value"] = "8.01"  # albumin 8.01 g/dL: a g/L value? not plausible either way
    labs.to_csv(src / "labs.csv", index=False)
    outcomes = {}
    for shape, d in _shapes_of(src, tmp_path, ids).items():
        for jobs in (1, 2):
            out = tmp_path / f"{shape}-{jobs}.csv"
            summary = job.score(registered["uri"], d, out, jobs=jobs, patients_per_chunk=70,
                                    explain=2, log_to_mlflow=False)  # fmt: skip
            assert summary["counts"] == {"patients_in_input": 300, "scored": 299, "rejected": 1}
            pred = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id").sort_index()
            rejected = pd.read_csv(out.with_name(f"{shape}-{jobs}.rejected.csv"), dtype=str)
            outcomes[(shape, jobs)] = (pred, rejected[["patient_id", "reason"]].values.tolist())
    pred0, rejected0 = outcomes[("csv", 1)]
    file = "labs.csv"
    assert rejected0 == [["1", f"{file}, row {row + 1}, column 'value': albumin value 8.01 g/dL is not plausible "
                               "(expected within 0.5-7 g/dL); a value of this size looks like g/L, not g/dL"]]  # fmt: skip
    assert {"001", "A-001"} <= set(pred0.index) and "1" not in pred0.index
    for (shape, _jobs), (pred, rejected) in outcomes.items():
        pd.testing.assert_frame_equal(pred, pred0)
        expected_file = "labs.parquet" if shape == "parquet" else file
        # shuffled rows keep their own row numbers: the reason names the row of the file
        assert rejected[0][0] == "1" and rejected[0][1].startswith(f"{expected_file}, row ")
