"""One patient's explanation: it adds up to the model's log-odds, shows the site's units, and refuses bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from typer.testing import CliRunner

from conftest import private_store
from msc_response import MscResponseWarning, simulate
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.features import build_features
from msc_response.modeling.fitted import FittedModel, LoadedModel
from msc_response.modeling.models import ModelSpec, make_estimator, storable
from msc_response.reporting.waterfall import (
    explain_patient,
    shown_values,
    site_lab_units,
    waterfall_steps,
    write_explanation,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def features():
    config = config_from_dict({"name": "cp-explain"})
    return config, build_features(config, simulate("trial", n_patients=66, seed=4))


def _model(config, fs, kind: str, directory) -> LoadedModel:
    """A real model fit on the features, saved and read back as the registry reads it."""
    spec = ModelSpec(kind, kind, "candidate", tuple(fs.feature_columns))
    y = fs.table["response"].to_numpy(dtype=int)
    est = make_estimator(spec, config, 1, int(min(y.sum(), len(y) - y.sum())))
    est.fit(fs.table[fs.feature_columns].astype(float), y)
    path = FittedModel.from_estimator(kind, fs.feature_columns, storable(est)).save(directory)
    model_spec = {"kind": kind, "feature_columns": fs.feature_columns, "feature_spec": fs.feature_spec,
                  "config": config.to_dict(), "threshold": 0.5, "trained_on_simulated_data": True}  # fmt: skip
    return LoadedModel("local", "cp-explain", "1", model_spec, str(path))


@pytest.mark.parametrize("kind", ["lightgbm", "logistic"])
def test_explanation_adds_up_to_the_model_logit(features, kind, tmp_path):
    config, fs = features
    model = _model(config, fs, kind, tmp_path)
    p = model.fitted.predict_proba(fs.table)
    for i, pid in enumerate(fs.table["patient_id"]):
        expl = explain_patient(model, fs, pid)
        assert expl.base + expl.table["contribution"].sum() == pytest.approx(logit(p[i]), abs=1e-9)
        assert expl.probability == pytest.approx(p[i], abs=1e-12)
    steps = waterfall_steps(expl, top=5)
    assert len(steps) == 6 and steps["start"].iloc[0] == expl.base
    assert steps["end"].iloc[-1] == pytest.approx(expl.logit, abs=1e-12)
    assert (np.abs(expl.table["contribution"]).diff().dropna() <= 1e-15).all()  # largest first


def test_a_recalibrated_model_still_adds_up(features, tmp_path):
    config, fs = features
    plain = _model(config, fs, "lightgbm", tmp_path)
    spec = {**plain.spec.raw, "recalibration": {"intercept": 0.4, "slope": 0.6}}
    recal = LoadedModel("local", "cp-explain", "2", spec, plain.model_file)
    pid = fs.table["patient_id"].iloc[3]
    p = plain.fitted.predict_proba(fs.table.iloc[[3]])[0]
    expl = explain_patient(recal, fs, pid)
    assert expl.logit == pytest.approx(0.4 + 0.6 * logit(p), abs=1e-9)
    assert recal.fitted.predict_proba(fs.table.iloc[[3]])[0] == pytest.approx(
        expit(0.4 + 0.6 * logit(p))
    )


def test_values_in_the_site_units():
    spec = [{"name": "baseline_bilirubin", "kind": "lab", "source": "bilirubin", "unit": "mg/dL"},
            {"name": "baseline_albumin", "kind": "lab", "source": "albumin", "unit": "g/dL"},
            {"name": "baseline_creatinine", "kind": "lab", "source": "creatinine", "unit": "mg/dL"},
            {"name": "baseline_meld", "kind": "score", "source": "meld", "unit": "points"}]  # fmt: skip
    values = pd.Series({"baseline_bilirubin": 3.0, "baseline_albumin": 2.8, "baseline_creatinine": 1.5,
                        "baseline_meld": np.nan})  # fmt: skip
    # bilirubin written in umol/L (3.0 mg/dL x 17.1); albumin in g/dL as the model; creatinine's
    # latest written row is another value than the feature's (not the row it came from)
    written = {
        "bilirubin": ("umol/L", 51.3),
        "albumin": ("g/dL", 2.8),
        "creatinine": ("umol/L", 200.0),
    }
    shown = shown_values(values, spec, written)
    assert shown.loc["baseline_bilirubin", "shown"] == "51.3 umol/L (model: 3 mg/dL)"
    assert shown.loc["baseline_bilirubin", "unit"] == "umol/L"
    assert shown.loc["baseline_albumin", "shown"] == "2.8 g/dL"
    assert shown.loc["baseline_creatinine", "shown"] == "1.5 mg/dL"
    assert shown.loc["baseline_meld", "shown"] == "missing"


def test_site_lab_units_reads_the_latest_row_in_the_window():
    raw = pd.DataFrame({"patient_id": ["7", "7", "7", "07"], "day": [-10, 0, 28, 0],
                        "test": ["bilirubin"] * 4, "value": [40.0, 51.3, 20.0, 3.0],
                        "unit": ["umol/L", "umol/L", "umol/L", "mg/dL"]})  # fmt: skip
    assert site_lab_units(raw, "7", (-30, 0)) == {"bilirubin": ("umol/L", 51.3)}
    assert site_lab_units(raw, "07", (-30, 0)) == {"bilirubin": ("mg/dL", 3.0)}  # ids as written


def test_write_png_and_html_and_refuse_other_suffixes(features, tmp_path):
    config, fs = features
    expl = explain_patient(
        _model(config, fs, "lightgbm", tmp_path), fs, fs.table["patient_id"].iloc[0]
    )
    png = write_explanation(expl, tmp_path / "w.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = write_explanation(expl, tmp_path / "w.html").read_text()
    assert "SIMULATED" in html and "baseline_mx1_monocytes_fraction" in html
    with pytest.raises(ConfigError, match="out: expected a .png or .html"):
        write_explanation(expl, tmp_path / "w.pdf")
    assert not (tmp_path / "w.pdf").exists()
    with pytest.raises(DataError, match="'nobody' is not in the study"):
        explain_patient(_model(config, fs, "lightgbm", tmp_path), fs, "nobody")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A trial written to disk and a model registered in a real MLflow store."""
    from msc_response.pipelines.train import train
    from msc_response.simulator import write_simulation

    root = tmp_path_factory.mktemp("explain")
    with private_store(root):
        write_simulation(root / "trial", design="trial", seed=8)
        config = config_from_dict(
            {"name": "cp-explain-cli", "model": {"repeats": 2, "bootstrap": 20}}
        )
        with warnings.catch_warnings():  # Riley and calibration warnings: tested in test_train
            warnings.simplefilter("ignore", MscResponseWarning)
            summary = train(config, root / "trial")
        yield root, summary["model_uri"]


@pytest.mark.slow
def test_cli_explain_writes_the_waterfall_in_the_site_units(registered):
    from msc_response import load_model, load_study, predict

    root, uri = registered
    labs = pd.read_csv(root / "trial" / "labs.csv", dtype={"patient_id": str})
    si = labs[(labs["test"] == "bilirubin") & (labs["unit"] == "umol/L") & (labs["day"] == 0)]
    pid = si["patient_id"].iloc[0]
    for out in (root / "p.png", root / "p.html"):
        result = runner.invoke(app, ["explain", "--model", uri, "--data", str(root / "trial"),
                                     "--patient", pid, "--out", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 1000
    html = (root / "p.html").read_text()
    written = si["value"].iloc[0]
    assert f"{written:.4g} umol/L (model: " in html
    p = (
        predict(load_model(uri), load_study(root / "trial"))
        .table.set_index("patient_id")
        .loc[pid, "probability"]
    )
    assert f"probability {p:.3f}" in result.output


@pytest.mark.slow
def test_cli_explain_bad_input_exits_2_and_writes_nothing(registered, tmp_path):
    root, uri = registered
    cases = [
        (
            ["--patient", "SIM-9999999", "--out", str(tmp_path / "a.png")],
            "patient_id (--patient) is not in the study",
        ),
        (
            ["--patient", "1", "--out", str(tmp_path / "b.png")],
            "patient_id (--patient) is not in the study",
        ),  # ids are text as written; the console names no id, not even the one typed
        (
            ["--patient", "SIM-0000001", "--out", str(tmp_path / "c.pdf")],
            "--out: expected a .png or .html",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(
            app, ["explain", "--model", uri, "--data", str(root / "trial"), *args]
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
    result = runner.invoke(app, ["explain", "--model", "models:/no-such-model/1", "--data", str(root / "trial"),
                                 "--patient", "SIM-0000001", "--out", str(tmp_path / "d.png")])  # fmt: skip
    assert result.exit_code == 2 and "cannot load it" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_explain_an_excluded_patient_says_why(registered, tmp_path):
    import shutil

    root, uri = registered
    study = shutil.copytree(root / "trial", tmp_path / "trial")
    labs = pd.read_csv(study / "labs.csv", dtype={"patient_id": str})
    labs[~((labs["patient_id"] == "SIM-0000002") & (labs["day"] <= 0))].to_csv(
        study / "labs.csv", index=False
    )
    out = tmp_path / "x.png"
    result = runner.invoke(app, ["explain", "--model", uri, "--data", str(study), "--patient", "SIM-0000002",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2 and "cannot be explained: no baseline measurement" in result.output
    assert not out.exists()
