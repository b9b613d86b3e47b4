"""The feature builder: baseline and follow-up picks, scores, assumptions, patient flow."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LABS, TRIAL_PATIENTS, write_study
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import DataError
from msc_response.features import build_features, pick_values

runner = CliRunner()


def cfg(**over):
    raw = {"name": "t", "assume": {"dialysis": 0, "encephalopathy": 0}}
    raw.update(over)
    return config_from_dict(raw)


def test_pick_values_latest_and_closest_with_ties_to_later():
    pidx = np.array([0, 0, 0, 0, 1])
    day = np.array([-10, 0, 25, 31, 2])
    codes = np.zeros(5, dtype=int)
    value = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    latest, days = pick_values(pidx, day, codes, value, 2, 1, -30, 0)
    assert latest[0, 0] == 2.0 and days[0, 0] == 0 and np.isnan(latest[1, 0])
    closest, days = pick_values(pidx, day, codes, value, 2, 1, 21, 35, target=28)
    assert closest[0, 0] == 4.0 and days[0, 0] == 31  # 25 and 31 are both 3 days off


def test_features_labels_and_flow(study_dir):
    fs = build_features(cfg(), study_dir)
    t = fs.table.set_index("patient_id")
    # P1: worked Child-Pugh 12 at baseline (bilirubin of day 0, not day -10)
    assert t.loc["P1", "baseline_child_pugh"] == 12
    assert t.loc["P1", "baseline_bilirubin"] == pytest.approx(3.2)
    # follow-up day 31: bilirubin 1.8 (1), albumin 2.9 (2), INR 1.6 (1), ascites 1 (2), enceph 1 (2) = 8
    assert t.loc["P1", "endpoint_followup"] == 8 and t.loc["P1", "response"] == 1
    assert t.loc["P1", "followup_day_used"] == 31
    # P2 in SI units: MELD 20 as in the worked example, albumin 3.0 -> 3.6 g/dL
    assert t.loc["P2", "baseline_meld"] == 20
    assert t.loc["P2", "baseline_albumin"] == pytest.approx(3.0)
    assert t.loc["P2", "endpoint_change"] == -1 and t.loc["P2", "response"] == 1
    # P4: PBC bands, PT instead of INR, encephalopathy assumed
    assert t.loc["P4", "baseline_child_pugh"] == 1 + 2 + 3 + 2 + 1  # PT 7 s over control: 3 points
    assert t.loc["P4", "response"] == 1  # ascites 1 -> 0
    # cells and regimen
    assert t.loc["P1", "baseline_mx1_monocytes_fraction"] == pytest.approx(0.30)
    assert np.isnan(t.loc["P4", "baseline_mx1_monocytes_fraction"])
    assert t.loc["P2", "cumulative_dose_1e8"] == pytest.approx(6.0)
    # every patient accounted for
    assert set(fs.table["patient_id"]) | set(fs.exclusions["patient_id"]) == {
        "P1",
        "P2",
        "P3",
        "P4",
    }
    assert (
        fs.exclusions.set_index("patient_id").loc["P3", "reason"]
        == "no follow-up measurement in days 21..35"
    )
    assert fs.flow == {
        "patients_in_input": 4,
        "excluded": {"no follow-up measurement in days 21..35": 1},
        "n_excluded": 1,
        "included": 3,
        "responders": 3,
        "non_responders": 0,
    }
    a = fs.assumptions
    assert {"P4"} == set(a.loc[a["assumption"].str.contains("PT over control"), "patient_id"])
    assert (
        (a["patient_id"] == "P4") & a["assumption"].str.startswith("encephalopathy = 0")
    ).sum() == 2
    assert "P3" not in set(a["patient_id"])  # excluded patients carry no assumptions


def test_missing_component_without_assume_excludes_with_reason(study_dir):
    fs = build_features(cfg(assume={"dialysis": 0}), study_dir)
    reasons = fs.exclusions.set_index("patient_id")["reason"]
    assert reasons["P4"] == "baseline child_pugh not computable: missing encephalopathy"


def test_no_baseline_is_excluded(tmp_path):
    labs = LABS.replace("P3,0,", "P3,5,")
    fs = build_features(cfg(), write_study(tmp_path / "s", labs=labs))
    assert (
        fs.exclusions.set_index("patient_id").loc["P3", "reason"]
        == "no baseline measurement in days -30..0"
    )


def test_endpoint_the_data_cannot_give_is_an_error(tmp_path):
    labs = "\n".join(line for line in LABS.splitlines() if ",creatinine," not in line) + "\n"
    with pytest.raises(
        DataError, match="endpoint 'meld' needs test 'creatinine', which is never measured"
    ):
        build_features(cfg(endpoint={"score": "meld"}), write_study(tmp_path / "s", labs=labs))
    no_enceph = (
        "\n".join(line for line in LABS.splitlines() if ",encephalopathy," not in line) + "\n"
    )
    with pytest.raises(DataError, match=r"needs test 'encephalopathy'.*assume"):
        build_features(cfg(assume={}), write_study(tmp_path / "e", labs=no_enceph))


def test_landmark_features(study_dir):
    fs = build_features(cfg(landmark_day=7), study_dir)
    t = fs.table.set_index("patient_id")
    assert t.loc["P1", "landmark_mx1_monocytes_fraction"] == pytest.approx(0.18)
    assert t.loc["P1", "change_mx1_monocytes_fraction"] == pytest.approx(-0.12)
    assert "change_mx1_monocytes_fraction" in fs.feature_columns


def test_scoring_mode_needs_no_follow_up(study_dir):
    fs = build_features(cfg(), study_dir, labels=False)
    assert len(fs.table) == 4 and "response" not in fs.table
    assert fs.flow["included"] == 4


def test_albumin_endpoint(study_dir):
    fs = build_features(
        cfg(endpoint={"score": "albumin", "direction": "increase", "min_change": 0.5}), study_dir
    )
    t = fs.table.set_index("patient_id")
    assert t.loc["P2", "endpoint_change"] == pytest.approx(0.6) and t.loc["P2", "response"] == 1
    assert t.loc["P1", "response"] == 0  # 2.6 -> 2.9


def test_simulated_trial_round_trip(trial_dir):
    """Labels built from the simulated labs equal the simulator's realised truth."""
    truth = pd.read_csv(trial_dir / "truth.csv")
    for score in ("child_pugh", "meld"):
        fs = build_features(
            config_from_dict({"name": "t", "endpoint": {"score": score}}), trial_dir
        )
        assert fs.flow["included"] == TRIAL_PATIENTS and fs.flow["n_excluded"] == 0
        merged = fs.table.merge(truth, on="patient_id")
        assert (merged["response"].astype(int) == merged[f"y_{score}"]).all()
    fs = build_features(
        config_from_dict(
            {
                "name": "t",
                "endpoint": {"score": "albumin", "direction": "increase", "min_change": 0.1},
            }
        ),
        trial_dir,
    )
    merged = fs.table.merge(truth, on="patient_id")
    assert (merged["response"].astype(int) == merged["y_albumin"]).all()


def test_h5ad_gives_the_cells_form(trial_dir, tmp_path):
    d = tmp_path / "h5"
    d.mkdir()
    for name in ("patients.csv", "labs.csv", "cells.h5ad"):
        (d / name).write_bytes((trial_dir / name).read_bytes())
    fs = build_features(config_from_dict({"name": "t"}), d)
    derived = fs.derived_cells
    assert set(derived.columns) == {"patient_id", "day", "population", "parent", "fraction"}
    cells = pd.read_csv(trial_dir / "cells.csv")
    m = derived.merge(cells, on=["patient_id", "day"], suffixes=("_h5ad", "_true"))
    assert len(m) == 16  # 4 patients x 4 days
    # 400 cells a sample, ~220 monocytes: the derived fraction is within sampling error
    assert (m["fraction_h5ad"] - m["fraction_true"]).abs().max() < 0.12
    assert fs.table["baseline_mx1_monocytes_fraction"].notna().sum() == 4


def test_cli_build_features_writes_all_outputs(study_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: t\nassume: {encephalopathy: 0, dialysis: 0}\n")
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(
        app,
        ["build-features", "--config", str(config), "--data", str(study_dir), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "patients in input: 4" in result.output and "included: 3" in result.output
    assert len(pd.read_parquet(out)) == 3
    assert pd.read_csv(out.with_name("features.excluded.csv"))["patient_id"].tolist() == ["P3"]
    flow = json.loads(out.with_name("features.flow.json").read_text())
    assert flow["flow"]["included"] == 3 and "baseline_child_pugh" in flow["feature_columns"]


def test_cli_bad_data_exits_2_and_writes_nothing(tmp_path):
    d = write_study(tmp_path / "s", labs=LABS + "P1,-1,albumin,38,g/dL\n")  # in the baseline window
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(
        app, ["build-features", "--config", str(config), "--data", str(d), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "labs.csv, row 48, column 'value'" in result.output
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_cli_bad_config_exits_2(tmp_path, study_dir):
    config = tmp_path / "c.yaml"
    config.write_text("name: t\nendpoint: {score: bmi}\n")
    result = runner.invoke(
        app,
        [
            "build-features",
            "--config",
            str(config),
            "--data",
            str(study_dir),
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert result.exit_code == 2 and "endpoint.score: bad value 'bmi'" in result.output
