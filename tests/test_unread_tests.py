"""A row problem in a lab test the config never reads rejects nobody (study/policy.py).

The case of the CDISC pilot's LB: urinalysis tests that SDTM writes without a unit
(SPGRAV, PH) and text results (KETONES "NEGATIVE") beside the chemistry the endpoint
needs. Rows outside every window were already counted, listed and excused; a test that no
feature, label, score or assumption reads is excused by the same rule
(:func:`msc_response.features.read_lab_tests`), in every verb and both scoring engines
(tests/test_spark.py compares the engines' counts).
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import copy_study, private_store, run_cli
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.features import build_features, read_lab_tests

PATIENTS3 = ["SIM-0000001", "SIM-0000002", "SIM-0000003"]


def urinalysis(patients=PATIENTS3) -> str:
    """Per patient: SPGRAV and PH at baseline without a unit, KETONES 'NEGATIVE' at day 28 (CSV lines)."""
    return "".join(
        f"{p},0,SPGRAV,1.015,\n{p},0,PH,6.0,\n{p},28,KETONES,NEGATIVE,\n" for p in patients
    )


def config(**extra):
    return config_from_dict({"name": "unread", "model": {"repeats": 2, "bootstrap": 10}, **extra})


def test_tests_read_is_one_function_of_the_config():
    read = read_lab_tests(config())
    assert {"bilirubin", "albumin", "inr", "pt", "creatinine", "sodium", "dialysis"} <= read
    assert {"platelets", "alt", "ast", "pta"} <= read  # common tests the product knows
    assert not {"spgrav", "ph", "ketones"} & read
    assert read_lab_tests(config(lab_features="all")) is None
    assert "spgrav" in read_lab_tests(config(lab_features=["SPGRAV"]))
    assert "albumin" in read_lab_tests(config(endpoint={"score": "albumin", "direction": "increase"},
                                          lab_features=[]))  # fmt: skip
    with pytest.raises(ConfigError, match="lab_features: bad value 'some'"):
        config(lab_features="some")


def test_problems_in_tests_nobody_reads_reject_nobody_and_are_counted(trial_dir, tmp_path):
    clean = build_features(config(), trial_dir)
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=urinalysis())
    fs = build_features(config(), d)  # strict: no error, none of these rows is read
    pd.testing.assert_frame_equal(fs.table, clean.table)
    assert fs.feature_columns == clean.feature_columns
    listed = fs.problems[["patient_id", "test", "rule", "test_read", "in_window"]]
    assert len(listed) == 12 and not listed["test_read"].any() and not listed["in_window"].any()
    assert set(listed["test"]) == {"SPGRAV", "PH", "KETONES"}
    assert set(listed["rule"]) == {"missing value", "not a number"}
    assert fs.flow["rows_with_problems_in_tests_not_read"] == 12
    assert fs.flow["rows_with_problems_outside_windows"] == 0
    assert fs.flow["included"] == clean.flow["included"] and fs.flow["excluded"] == {}


def test_the_same_problem_in_albumin_keeps_todays_rules(trial_dir, tmp_path):
    d = copy_study(
        trial_dir, tmp_path / "s", labs_extra=urinalysis() + "SIM-0000004,0,albumin,3.1,\n"
    )
    with pytest.raises(DataError, match="unit is missing") as info:
        build_features(config(), d)
    assert len(info.value.problems) == 1  # only the albumin row matters
    fs = build_features(config(), d, bad_rows="exclude")
    assert fs.exclusions.set_index("patient_id").loc["SIM-0000004", "category"] == (
        "bad data: missing value"
    )
    assert fs.flow["rows_with_problems_in_tests_not_read"] == 12
    assert fs.flow["excluded"] == {"bad data: missing value": 1}


def test_a_config_that_reads_every_test_keeps_todays_rules(trial_dir, tmp_path):
    extra = urinalysis() + "SIM-0000001,0,base_excess,-2,mmol/L\n"
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=extra)
    assert "baseline_base_excess" not in build_features(config(), d).feature_columns
    with pytest.raises(DataError, match="unit is missing"):
        build_features(config(lab_features="all"), d)
    with pytest.raises(DataError, match="unit is missing"):
        build_features(config(lab_features=["SPGRAV"]), d)
    fs = build_features(config(lab_features="all"), d, bad_rows="exclude")
    assert set(fs.exclusions["patient_id"]) == set(PATIENTS3)
    assert "baseline_base_excess" in fs.feature_columns


def test_cli_build_features_and_train_exit_0_and_say_so(trial_dir, tmp_path):
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=urinalysis())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: unread-cli\nmodel: {repeats: 2, bootstrap: 10, candidates: [logistic_l2]}\n"
    )
    out = tmp_path / "f.parquet"
    result = run_cli("build-features", "--config", cfg, "--data", d, "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "rows with problems (not used): 12, of which rejecting nobody: 0 outside every window, " \
           "12 in tests the config does not read" in text  # fmt: skip
    listed = pd.read_csv(tmp_path / "f.problems.csv", dtype=str, keep_default_na=False)
    assert set(listed["test"]) == {"SPGRAV", "PH", "KETONES"} and set(listed["test_read"]) == {
        "False"
    }
    (tmp_path / "store").mkdir()
    with private_store(tmp_path / "store"):
        result = run_cli("train", "--config", cfg, "--data", d)
    assert result.exit_code == 0, result.output
    assert "12 in tests the config does not read" in " ".join(result.output.split())
