"""Validation of a study directory: every rule reports file, row and column, all at once.

Structural problems raise; row problems are collected in ``Study.problems`` (the verbs'
policy decides what they mean: see tests/test_intake.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import LABS, PATIENTS, write_study
from msc_response.errors import DataError
from msc_response.study import load_study
from msc_response.study.problems import as_problems


def problems_of(directory) -> list[str]:
    """Structural problems (raised) or row problems (collected), as messages."""
    try:
        study = load_study(directory)
    except DataError as err:
        return [str(p) for p in err.problems]
    return [str(p) for p in as_problems(study.problems)]


def test_valid_study_loads_in_canonical_units(study_dir):
    study = load_study(study_dir)
    assert list(study.patients["patient_id"]) == ["P1", "P2", "P3", "P4"]
    labs = study.labs
    p2 = labs[(labs["pidx"] == 1) & (labs["day"] == 0)].set_index("test")["value"]
    assert p2["bilirubin"] == pytest.approx(4.2)
    assert p2["albumin"] == pytest.approx(3.0)
    assert p2["creatinine"] == pytest.approx(1.9)
    assert study.lab_units["platelets"] == "10^9/L"
    assert study.cells is not None and len(study.cells) == 4


def test_study_from_parquet_equals_csv(study_dir, tmp_path):
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for name in ("patients", "labs", "cells"):
        pd.read_csv(study_dir / f"{name}.csv").to_parquet(pq_dir / f"{name}.parquet")
    a, b = load_study(study_dir), load_study(pq_dir)
    pd.testing.assert_frame_equal(a.labs.astype({"test": str}), b.labs.astype({"test": str}))


def test_every_lab_problem_is_reported_at_once(tmp_path):
    labs = (
        LABS
        + "\n".join(
            [
                "P1,1,albumin,38,g/dL",  # row 48: wrong unit betrayed by size
                "P1,2,bilirubin,1.0,mg/L",  # unknown unit
                "P1,3,bilirubin,abc,mg/dL",  # not a number
                "P9,0,bilirubin,1.0,mg/dL",  # patient not in patients
                "P1,4,ascites,3,grade",  # unknown grade
                "P1,5,platelets,0.08,10^12/L",  # unknown test changes unit
                "P1,0,bilirubin,3.3,mg/dL",  # conflicting duplicate (P1 day 0 bilirubin is 3.2)
                "P1,2.5,inr,1.1,ratio",  # day not whole
            ]
        )
        + "\n"
    )
    found = problems_of(write_study(tmp_path / "s", labs=labs))
    text = "\n".join(found)
    assert "labs.csv, row 48, column 'value': albumin value 38.0 g/dL is not plausible" in text
    assert "looks like g/L" in text
    assert "row 49, column 'unit': unknown unit 'mg/L' for test 'bilirubin'" in text
    assert "row 50, column 'value': value 'abc' is not a number" in text
    assert "row 51, column 'patient_id': patient_id 'P9' is not in the patients table" in text
    assert "row 52, column 'value': ascites value 3.0" in text
    assert (
        "row 53, column 'unit': test 'platelets' is in '10^12/L' here, but in '10^9/L' in its first row"
        in text
    )
    assert "row 55, column 'day'" in text and "not a whole number" in text
    # the conflicting duplicate is checked on data that passed the other rules
    clean = LABS + "P1,0,bilirubin,3.3,mg/dL\n"
    dup = problems_of(write_study(tmp_path / "d", labs=clean))
    assert [p.split(":")[0] for p in dup] == [
        "labs.csv, row 2, column 'value'",
        "labs.csv, row 48, column 'value'",
    ]
    assert all("conflicting duplicate of test 'bilirubin' on day 0" in p for p in dup)


def test_identical_duplicates_are_dropped(tmp_path):
    study = load_study(write_study(tmp_path / "s", labs=LABS + "P1,0,bilirubin,3.2,mg/dL\n"))
    p1 = study.labs[
        (study.labs["pidx"] == 0) & (study.labs["day"] == 0) & (study.labs["test"] == "bilirubin")
    ]
    assert len(p1) == 1


def test_duplicate_patient_ids_are_structural(tmp_path):
    patients = PATIENTS + "P1,M,50,HBV,A,1e8,1,0\n"
    with pytest.raises(DataError) as info:
        load_study(write_study(tmp_path / "s", patients=patients))
    assert [str(p) for p in info.value.problems] == [
        "patients.csv, row 1, column 'patient_id': duplicate patient_id 'P1'",
        "patients.csv, row 5, column 'patient_id': duplicate patient_id 'P1'",
    ]


def test_patient_problems(tmp_path):
    patients = PATIENTS + "P5,X,200,HBV,A,1e8,1.5,0\nP6,F,abc,HBV,A,1e8,1,0\n"
    text = "\n".join(problems_of(write_study(tmp_path / "s", patients=patients)))
    assert "row 5, column 'sex'" in text
    assert "row 5, column 'age_years'" in text
    assert "row 5, column 'n_infusions'" in text
    assert "row 6, column 'age_years': value 'abc' is not a number" in text
    assert "row 6, column 'age_years': age_years is missing" not in text  # said once


def test_missing_columns_and_files(tmp_path):
    d = write_study(tmp_path / "s", labs="patient_id,day,test,value\nP1,0,inr,1.0\n")
    assert any("labs.csv, column 'unit': required column is missing" in p for p in problems_of(d))
    (d / "labs.csv").unlink()
    assert any("labs.csv: missing from the study directory" in p for p in problems_of(d))
    assert any("study directory not found" in p for p in problems_of(tmp_path / "nowhere"))


def test_ambiguous_table_format(study_dir):
    pd.read_csv(study_dir / "labs.csv").to_parquet(study_dir / "labs.parquet")
    assert any("labs.csv and labs.parquet both exist" in p for p in problems_of(study_dir))


def test_cell_problems(tmp_path):
    cells = "patient_id,day,population,parent,fraction\nP1,0,MX1+ monocytes,monocytes,30\nP7,0,MX1+ monocytes,monocytes,0.2\n"
    text = "\n".join(problems_of(write_study(tmp_path / "s", cells=cells)))
    assert (
        "cells.csv, row 1, column 'fraction': fraction 30.0 is outside 0-1; looks like a percentage"
        in text
    )
    assert "row 2, column 'patient_id': patient_id 'P7' is not in the patients table" in text


def test_problems_in_several_files_come_together(tmp_path):
    cells = "patient_id,day,population,parent,fraction\nP1,0,MX1+ monocytes,monocytes,1.5\n"
    labs = LABS + "P1,1,albumin,38,g/dL\n"
    text = "\n".join(problems_of(write_study(tmp_path / "s", labs=labs, cells=cells)))
    assert "labs.csv" in text and "cells.csv" in text


def test_two_patients_without_an_id_are_row_problems_not_a_crash(tmp_path):
    """Two missing ids made the patients' id index non-unique (pandas raised InvalidIndexError)."""
    patients = PATIENTS.replace("P1,M,50", ",M,50").replace("P3,M,44", ",M,44")
    problems = problems_of(write_study(tmp_path / "s", patients=patients))
    assert "patients.csv, row 1, column 'patient_id': patient_id is missing" in problems
    assert "patients.csv, row 3, column 'patient_id': patient_id is missing" in problems
    assert any("'P1' is not in the patients table" in p for p in problems)
