"""Real-world shapes of data: ids as written, registry-length follow-up, bad rows per patient.

The scoring side of the same rules (one bad row among thousands, every input shape) is in
pipelines/test_score.py; training's strict and --exclude-bad-patients modes in pipelines/test_train.py.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import LABS, PATIENTS, TRIAL_PATIENTS, copy_study, private_store, run_cli, write_study
from msc_response.config import config_from_dict
from msc_response.errors import DataError
from msc_response.features import build_features
from msc_response.study import load_study

IDS = {"SIM-0000001": "001", "SIM-0000002": "1", "SIM-0000003": "A-001"}


def config(**over):
    return config_from_dict({"name": "intake", **over})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ids_are_kept_exactly_as_written(trial_dir, tmp_path, fmt):
    d = copy_study(trial_dir, tmp_path / "s", IDS, fmt)
    fs = build_features(config(), d)
    ids = list(fs.table["patient_id"]) + list(fs.exclusions["patient_id"])
    assert {"001", "1", "A-001"} <= set(ids)
    assert len(ids) == len(set(ids)) == TRIAL_PATIENTS
    assert all(isinstance(i, str) for i in ids)


def test_integer_parquet_ids_are_their_digits_and_float_ids_are_refused(study_dir, tmp_path):
    d = tmp_path / "pq"
    d.mkdir()
    numeric = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
    for name in ("patients", "labs", "cells"):
        df = pd.read_csv(study_dir / f"{name}.csv")
        df["patient_id"] = df["patient_id"].map(numeric).astype("int64")
        df.to_parquet(d / f"{name}.parquet", index=False)
    study = load_study(d)
    assert list(study.patients["patient_id"]) == ["1", "2", "3", "4"]
    assert len(study.labs) > 0 and study.problems.empty
    patients = pd.read_parquet(d / "patients.parquet")
    patients["patient_id"] = patients["patient_id"].astype(float)
    patients.to_parquet(d / "patients.parquet", index=False)
    with pytest.raises(
        DataError, match=r"patients.parquet, column 'patient_id': patient_id is stored as double"
    ):
        load_study(d)


def test_labs_years_after_enrolment_are_valid_and_unused(trial_dir, tmp_path):
    later = "".join(f"SIM-0000001,{day},albumin,3.1,g/dL\n" for day in (3766, 5110, 36500))
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=later)
    study = load_study(d)
    assert study.problems.empty
    assert sorted(study.labs.loc[study.labs["day"] > 3000, "day"]) == [3766, 5110, 36500]
    plain = build_features(config(), trial_dir)
    pd.testing.assert_frame_equal(build_features(config(), d).table, plain.table)


def test_a_day_beyond_100_years_is_a_row_problem(trial_dir, tmp_path):
    d = copy_study(trial_dir, tmp_path / "s", labs_extra="SIM-0000001,40000,albumin,3.1,g/dL\n")
    problems = load_study(d).problems
    assert problems["rule"].tolist() == ["day out of range"]
    assert "day 40000.0 is outside -36525..36525" in problems["message"][0]
    # a day that far lies outside every window: listed, but it rejects nobody
    fs = build_features(config(), d)
    assert (
        "SIM-0000001" in set(fs.table["patient_id"])
        and fs.flow["rows_with_problems_outside_windows"] == 1
    )
    # a day that is not a number could lie anywhere: it matters
    d2 = copy_study(trial_dir, tmp_path / "s2", labs_extra="SIM-0000001,day 3,albumin,3.1,g/dL\n")
    with pytest.raises(DataError, match="value 'day 3' is not a number"):
        build_features(config(), d2)
    assert "SIM-0000001" in set(
        build_features(config(), d2, bad_rows="exclude").exclusions["patient_id"]
    )


def test_a_bad_row_outside_every_window_rejects_nobody_but_is_listed(trial_dir, tmp_path):
    d = copy_study(trial_dir, tmp_path / "s", labs_extra="SIM-0000002,400,albumin,38,g/dL\n")
    fs = build_features(config(), d)  # strict: still fine, the row is never read
    assert "SIM-0000002" in set(fs.table["patient_id"])
    assert fs.problems[["patient_id", "rule", "in_window"]].values.tolist() == [
        ["SIM-0000002", "implausible value", False]
    ]
    assert fs.flow["rows_with_problems"] == {"implausible value": 1}
    assert fs.flow["rows_with_problems_outside_windows"] == 1


def test_bad_rows_in_windows_exclude_their_patient_with_the_problem_as_reason(trial_dir, tmp_path):
    extra = "SIM-0000004,0,albumin,38,g/dL\nSIM-0000004,-7,bilirubin,abc,mg/dL\nSIM-0000009,28,inr,inf,ratio\n"
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=extra)
    n_rows = len(pd.read_csv(trial_dir / "labs.csv"))
    with pytest.raises(DataError) as info:
        build_features(config(), d)
    shown = [str(p) for p in info.value.problems]
    assert shown == [
        f"labs.csv, row {n_rows + 1}, column 'value': albumin value 38.0 g/dL is not plausible "
        "(expected within 0.5-7 g/dL); a value of this size looks like g/L, not g/dL",
        f"labs.csv, row {n_rows + 2}, column 'value': value 'abc' is not a number",
        f"labs.csv, row {n_rows + 3}, column 'value': value inf is not a finite number",
    ]
    fs = build_features(config(), d, bad_rows="exclude")
    reasons = fs.exclusions.set_index("patient_id")
    assert reasons.loc["SIM-0000004", "reason"].startswith(
        f"labs.csv, row {n_rows + 1}, column 'value': albumin"
    )
    assert reasons.loc["SIM-0000004", "reason"].endswith("(and 1 more problem(s))")
    assert reasons.loc["SIM-0000009", "category"] == "bad data: not finite"
    assert fs.flow["excluded"]["bad data: implausible value"] == 1
    assert {"SIM-0000004", "SIM-0000009"}.isdisjoint(fs.table["patient_id"])
    assert (
        fs.flow["patients_in_input"]
        == fs.flow["included"] + fs.flow["n_excluded"]
        == TRIAL_PATIENTS
    )


def test_values_that_cannot_be_are_row_problems(study_dir, tmp_path):
    extra = "P1,0,platelets,-500,10^9/L\nP2,0,alt,1e308,U/L\nP2,-1,alt,inf,U/L\nP3,0,base_excess,-4,mmol/L\n"
    d = write_study(tmp_path / "s", labs=LABS + extra)
    problems = load_study(d).problems
    assert problems[["patient_id", "rule"]].values.tolist() == [
        ["P1", "negative value"], ["P2", "not finite"],
    ]  # fmt: skip
    # 1e308 is a finite number: a test the project does not know has no range to check it
    assert 1e308 in load_study(d).labs["value"].to_numpy()


def test_surrounding_spaces_in_an_id_are_reported_not_fixed(tmp_path):
    labs = LABS.replace("P3,0,bilirubin,2.0,mg/dL", " P3,0,bilirubin,2.0,mg/dL")
    patients = PATIENTS.replace("P4,F,58", "P4 ,F,58")
    study = load_study(write_study(tmp_path / "s", labs=labs, patients=patients))
    found = study.problems[["file", "row", "patient_id", "rule", "pidx"]].values.tolist()
    # the row of ' P3' is attributed to P3 (not used); P4's labs name no patient as written
    assert found[:2] == [
        ["patients.csv", 4, "P4 ", "id with spaces", 3],
        ["labs.csv", 31, " P3", "id with spaces", 2],
    ]
    assert {tuple(f[2:]) for f in found[2:]} == {("P4", "unknown patient", -1)} and len(found) == 12
    assert list(study.patients["patient_id"]) == ["P1", "P2", "P3", "P4 "]


def test_dates_in_the_day_column_are_refused_with_a_reason(study_dir, tmp_path):
    d = tmp_path / "pq"
    shutil.copytree(study_dir, d)
    labs = pd.read_csv(d / "labs.csv")
    labs["day"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(labs["day"], unit="D")
    (d / "labs.csv").unlink()
    labs.to_parquet(d / "labs.parquet", index=False)
    with pytest.raises(DataError, match="labs.parquet, column 'day': holds timestamp.* not a date"):
        load_study(d)


def parts_of(df, n=3):
    bounds = np.linspace(0, len(df), n + 1).astype(int)
    return [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_a_parquet_part_directory_reads_like_one_file(study_dir, tmp_path):
    d = tmp_path / "parts"
    shutil.copytree(study_dir, d)
    labs = pd.read_csv(d / "labs.csv", dtype={"patient_id": str})
    (d / "labs.csv").unlink()
    (d / "labs").mkdir()
    for k, part in enumerate(parts_of(labs)):
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), d / "labs" / f"part-{k:05d}.parquet"
        )
    (d / "labs" / "_SUCCESS").write_text("")
    a, b = load_study(study_dir), load_study(d)
    pd.testing.assert_frame_equal(a.labs.astype({"test": str}), b.labs.astype({"test": str}))
    bad = labs.copy()
    bad.loc[40, "value"] = -1.0  # albumin -1: the row number counts across the parts
    shutil.rmtree(d / "labs")
    (d / "labs").mkdir()
    for k, part in enumerate(parts_of(bad)):
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), d / "labs" / f"part-{k:05d}.parquet"
        )
    problems = load_study(d).problems
    assert problems[["file", "row"]].values.tolist() == [["labs/", 41]]


def test_every_problem_is_kept_and_the_full_list_written_beside_the_output(trial_dir, tmp_path):
    bad = "".join(f"SIM-{i:07d},0,albumin,{50 + i},g/dL\n" for i in range(1, 31))
    bad += "".join(f"SIM-{i:07d},-1,inr,x{i},ratio\n" for i in range(1, 31))
    d = copy_study(trial_dir, tmp_path / "s", labs_extra=bad)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    out = tmp_path / "out" / "features.parquet"
    result = run_cli("build-features", "--config", cfg, "--data", d, "--out", out)
    assert result.exit_code == 2
    assert "60 problem(s) in the input" in result.output
    assert (
        result.output.count("is not plausible") == 10
        and result.output.count("is not a number") == 10
    )
    listed = pd.read_csv(out.with_name("features.problems.csv"))
    assert len(listed) == 60 and listed["rule"].value_counts().to_dict() == {
        "implausible value": 30, "not a number": 30}  # fmt: skip
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.problems.csv"]
    # excluding them instead: features written, the 30 patients excluded, every row listed
    result = run_cli(
        "build-features", "--config", cfg, "--data", d, "--out", out, "--exclude-bad-patients"
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out.with_name("features.excluded.csv"))) >= 30
    assert len(pd.read_csv(out.with_name("features.problems.csv"))) == 60


@pytest.mark.slow
def test_train_stops_on_bad_rows_or_excludes_those_patients(trial_dir, tmp_path):
    import json

    extra = "001,0,albumin,38,g/dL\nA-001,-7,inr,abc,ratio\nA-001,5000,sodium,9999,mmol/L\n"
    d = copy_study(trial_dir, tmp_path / "s", IDS, labs_extra=extra)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: intake-train\nmodel: {repeats: 2, bootstrap: 10, candidates: [logistic_l2]}\n"
    )
    summary = tmp_path / "summary.json"
    with private_store(tmp_path):
        result = run_cli("train", "--config", cfg, "--data", d, "--summary", summary)
        assert result.exit_code == 2
        # the day-5000 row is outside every window
        assert "2 problem(s) in the input" in result.output
        assert (
            "column 'value': albumin value 38.0" in result.output
            and "value 'abc' is not a number" in result.output
        )
        assert not summary.exists()
        result = run_cli(
            "train", "--config", cfg, "--data", d, "--summary", summary, "--exclude-bad-patients"
        )
        assert result.exit_code == 0, result.output
        flow = json.loads(summary.read_text())["patient_flow"]
        assert flow["excluded"]["bad data: implausible value"] == 1
        assert flow["excluded"]["bad data: not a number"] == 1
        assert flow["rows_with_problems"] == {"implausible value": 2, "not a number": 1}
        assert flow["rows_with_problems_outside_windows"] == 1
        assert "excluded (bad data: implausible value): 1" in result.output


def test_the_package_imports_light_and_the_api_reads_a_simulated_study():
    """``import msc_response`` loads no MLflow, LightGBM or Spark; ``simulate`` is in memory."""
    import subprocess
    import sys

    code = ("import sys, msc_response; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('mlflow', 'lightgbm', 'pyspark', 'sklearn', 'shap')]; print(heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import msc_response as msc

    study = msc.simulate("trial", seed=1)
    assert study.simulated and len(study.patients) == TRIAL_PATIENTS and study.truth is not None
    fs = msc.build_features(config(), study)
    assert fs.simulated and len(fs.table) == TRIAL_PATIENTS
