"""``msc-response import --from sdtm``: round trips of a SIMULATED study, study days, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import TRIAL_PATIENTS
from export_helpers import (
    SDTM_MAPPING,
    assert_same_features,
    export_sdtm,
    sdtm_study_day,
    simulate_study,
    write_domains,
)
from msc_response.cli import app
from msc_response.importers.sdtm import elapsed_since_reference

runner = CliRunner()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    return simulate_study(tmp_path_factory.mktemp("sim") / "trial", seed=11)


def run_import(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["import", *map(str, args)])
    return result.exit_code, result.output + (
        result.stderr if result.stderr_bytes is not None else ""
    )


# ----------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("version", [5, 8])
def test_xpt_round_trip_gives_the_same_features(simulated, tmp_path, version):
    src = export_sdtm(simulated, tmp_path / "sdtm", version=version)
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 0, output
    assert_same_features(simulated, tmp_path / "study")
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    assert report["problems"] == [] and report["rows_not_imported"]["problems_by_reason"] == {}
    assert report["written"]["cell_rows"] == len(pd.read_csv(simulated / "cells.csv"))
    # every code says what it became; unmapped ones are kept under their own code
    became = {c["source_code"]: c["became"] for c in report["codes"]}
    assert (
        became["LB BILI (SERUM)"] == "bilirubin"
        and became["LB MX1MONO (BLOOD)"] == "cells: MX1+ monocytes"
    )
    assert became["FA ASCITES"] == "ascites" and became["LB PLAT (SERUM)"] == "platelets"
    assert set(report["unmapped_codes"]) == {"LB ALT (SERUM)", "LB AST (SERUM)", "LB PTA (SERUM)"}
    assert {"test": "inr", "unit_as_written": "", "unit_written": "ratio"}.items() <= next(
        c for c in report["unit_conversions"] if c["test"] == "inr" and c["unit_as_written"] == ""
    ).items()
    # the second MSC name counts only through the mapping file; the albumin infusion never
    msc = {t["EXTRT"]: t["msc_infusion"] for t in report["treatments"]}
    assert msc == {
        "UC-MSC": True,
        "UMBILICAL CORD STROMAL CELLS": True,
        "HUMAN SERUM ALBUMIN": False,
    }
    md = (tmp_path / "study" / "import_report.md").read_text()
    assert "| LB BILI (SERUM) | bilirubin | default |" in md


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_domains_round_trip_with_a_reference_start_before_the_infusion(
    simulated, tmp_path, fmt
):
    # RFSTDTC 7 days before the first infusion (screening): LBDY 8 is the infusion day
    src = export_sdtm(simulated, tmp_path / "sdtm", fmt=fmt, reference="screening")
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 0, output
    assert_same_features(simulated, tmp_path / "study")
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    assert (
        report["days"]["patients_whose_reference_start_is_not_the_first_infusion"] == TRIAL_PATIENTS
    )


def test_without_a_mapping_file_ascites_encephalopathy_dialysis_are_absent_and_said_so(
    simulated, tmp_path
):
    src = export_sdtm(simulated, tmp_path / "sdtm", version=8)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 0, output
    labs = pd.read_csv(tmp_path / "study" / "labs.csv")
    assert not {"ascites", "encephalopathy", "dialysis"} & set(labs["test"])
    assert {"PLAT", "ALT", "MX1MONO"} <= set(labs["test"])  # kept under their own codes
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    for test in ("ascites", "encephalopathy", "dialysis"):
        assert "no default" in report["absent_tests"][test]
    assert "absent: ascites" in output
    assert not (tmp_path / "study" / "cells.csv").exists()


# ----------------------------------------------------------------------------------------
# study days: SDTM has no day 0


def test_study_day_conversion_on_both_sides_of_day_1():
    np.testing.assert_array_equal(
        elapsed_since_reference([-8, -2, -1, 1, 2, 29]), [-8, -2, -1, 0, 1, 28]
    )
    assert np.isnan(elapsed_since_reference([0])[0])
    assert [sdtm_study_day(pd.Timestamp(d).date(), pd.Timestamp("2024-01-08").date())
            for d in ("2024-01-06", "2024-01-07", "2024-01-08", "2024-01-09")] == [-2, -1, 1, 2]  # fmt: skip


def small_sdtm(tmp_path: Path, lb_rows: list[dict], *, rfstdtc="2024-01-08", ex: list[dict] | None = None,
               dm: list[dict] | None = None, fmt: str = "csv") -> Path:  # fmt: skip
    """A two-patient SDTM source; LB rows default to bilirubin in mg/dL."""
    dm = dm or [{"USUBJID": "001", "SEX": "F", "AGE": 50, "RFSTDTC": rfstdtc, "ARM": "A"},
                {"USUBJID": "1", "SEX": "M", "AGE": 60, "RFSTDTC": rfstdtc, "ARM": "A"}]  # fmt: skip
    ex = ex or [{"USUBJID": p, "EXTRT": "UC-MSC", "EXDOSE": 1.0, "EXDOSU": "10^8 cells",
                 "EXSTDTC": "2024-01-08", "EXSTDY": float(sdtm_study_day(pd.Timestamp("2024-01-08").date(),
                                                                        pd.Timestamp(rfstdtc).date()))}
                for p in ("001", "1")]  # fmt: skip
    lb = [{"USUBJID": "001", "LBTESTCD": "BILI", "LBSTRESN": 2.0, "LBSTRESU": "mg/dL", "LBORRES": "2.0",
           "LBORRESU": "mg/dL", "LBDY": np.nan, "LBDTC": "", **r} for r in lb_rows]  # fmt: skip
    tables = {"DM": pd.DataFrame(dm), "EX": pd.DataFrame(ex), "LB": pd.DataFrame(lb)}
    return write_domains(tables, tmp_path / "sdtm", fmt=fmt)


def imported_labs(tmp_path, *extra) -> pd.DataFrame:
    code, output = run_import(
        tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study", *extra
    )
    assert code == 0, output
    return pd.read_csv(tmp_path / "study" / "labs.csv", dtype={"patient_id": str})


@pytest.mark.parametrize("rfstdtc, lbdy_to_day", [
    # the reference start is the infusion (EXSTDY 1)
    ("2024-01-08", {-8: -8, -1: -1, 1: 0, 2: 1}),
    # the reference start is a week before the infusion (EXSTDY 8)
    ("2024-01-01", {-1: -8, 1: -7, 7: -1, 8: 0, 9: 1}),
])  # fmt: skip
def test_lbdy_becomes_days_from_the_first_infusion(tmp_path, rfstdtc, lbdy_to_day):
    small_sdtm(
        tmp_path,
        [{"LBDY": float(dy), "LBSTRESN": float(dy + 10)} for dy in lbdy_to_day],
        rfstdtc=rfstdtc,
    )
    labs = imported_labs(tmp_path)
    assert dict(zip(labs["value"] - 10, labs["day"], strict=True)) == lbdy_to_day


def test_dates_count_from_the_first_infusion_when_lbdy_is_missing(tmp_path):
    rows = [{"LBDTC": "2024-01-07T09:00", "LBSTRESN": 1.0}, {"LBDTC": "2024-01-08", "LBSTRESN": 2.0},
            {"LBDTC": "2024-01-09", "LBSTRESN": 3.0}]  # fmt: skip
    small_sdtm(
        tmp_path, rows, rfstdtc="2024-01-01"
    )  # the reference start does not matter for dates
    labs = imported_labs(tmp_path)
    assert dict(zip(labs["value"], labs["day"], strict=True)) == {1.0: -1, 2.0: 0, 3.0: 1}


def test_rfxstdtc_places_dates_when_ex_has_no_date(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "F", "AGE": 50, "RFSTDTC": "", "RFXSTDTC": "2024-01-08"}]
    ex = [
        {
            "USUBJID": "001",
            "EXTRT": "MSC",
            "EXDOSE": 1e8,
            "EXDOSU": "cells",
            "EXSTDTC": "",
            "EXSTDY": np.nan,
        }
    ]
    small_sdtm(
        tmp_path, [{"LBDTC": "2024-01-07"}, {"LBDTC": "2024-01-09", "LBSTRESN": 3.0}], dm=dm, ex=ex
    )
    code, output = run_import(tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 0, output
    labs = pd.read_csv(tmp_path / "study" / "labs.csv")
    assert labs["day"].tolist() == [-1, 1]
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    assert (
        report["problems"][0]["reason"] == "infusion day unknown"
    )  # the EX record itself is listed
    assert report["days"]["patients_anchored_on_RFXSTDTC (EX has no day or date)"] == 1


def test_study_day_0_is_a_row_problem(tmp_path):
    small_sdtm(tmp_path, [{"LBDY": 0.0}, {"LBDY": 1.0, "LBSTRESN": 3.0}])
    labs = imported_labs(tmp_path)
    assert labs["day"].tolist() == [0]
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    assert report["problems"] == [{"reason": "day unknown", "file": "lb.csv", "row": 1, "column": "LBDY",
                                   "problem": "lb.csv, row 1, column 'LBDY': study day 0 "
                                   "does not exist in SDTM (day 1 is the reference start date)"}]  # fmt: skip


# ----------------------------------------------------------------------------------------
# ids, values, units


def test_ids_are_kept_exactly_as_written(tmp_path):
    small_sdtm(tmp_path, [{"USUBJID": "001", "LBDY": 1.0}, {"USUBJID": "1", "LBDY": 1.0, "LBSTRESN": 3.0}],
               fmt="xpt")  # fmt: skip
    labs = imported_labs(tmp_path)
    patients = pd.read_csv(tmp_path / "study" / "patients.csv", dtype={"patient_id": str})
    assert patients["patient_id"].tolist() == ["001", "1"]
    assert dict(zip(labs["patient_id"], labs["value"], strict=True)) == {"001": 2.0, "1": 3.0}


def test_original_result_when_the_standard_one_is_missing_and_units_are_read(tmp_path):
    rows = [
        {"LBDY": 1.0, "LBSTRESN": np.nan, "LBSTRESU": "", "LBORRES": "34.2", "LBORRESU": "µmol/L"},
        {"LBDY": 1.0, "LBTESTCD": "ALB", "LBSTRESN": 30.0, "LBSTRESU": "g/l"},
        {"LBDY": 1.0, "LBTESTCD": "INR", "LBSTRESN": 1.4, "LBSTRESU": ""},
        {"LBDY": 1.0, "LBTESTCD": "PT", "LBSTRESN": 16.0, "LBSTRESU": "sec"},
        {"LBDY": 1.0, "LBTESTCD": "BILI", "LBSPEC": "URINE", "LBSTRESN": 1.0, "LBSTRESU": "mg/dL"},
        {"LBDY": 1.0, "LBTESTCD": "GGT", "LBSTRESN": 80.0, "LBSTRESU": "U/L"},
    ]
    small_sdtm(tmp_path, rows)
    labs = imported_labs(tmp_path).set_index("test")
    assert labs.loc["bilirubin", ["value", "unit"]].tolist() == [34.2, "umol/L"]
    assert labs.loc["albumin", "unit"] == "g/L" and labs.loc["inr", "unit"] == "ratio"
    assert labs.loc["pt", "unit"] == "s"
    assert labs.loc["BILI URINE", "unit"] == "mg/dL"  # not the serum bilirubin the scores use
    assert labs.loc["GGT", ["value", "unit"]].tolist() == [80.0, "U/L"]


def report_of(tmp_path) -> dict:
    return json.loads((tmp_path / "study" / "import_report.json").read_text())


def test_row_problems_are_listed_with_file_row_column_and_counted(tmp_path):
    rows = [
        {"LBDY": 1.0, "LBSTRESU": "mmol/L"},  # 1: unknown unit for bilirubin
        {"LBDY": 2.0, "LBSTRESN": 2.0},  # 2, 3: conflicting duplicates
        {"LBDY": 2.0, "LBSTRESN": 2.5},
        {"LBDY": 3.0, "LBSTRESN": 2.0},  # 4, 5: identical duplicates (one row)
        {"LBDY": 3.0, "LBSTRESN": 2.0},
        {"LBDY": 4.0, "USUBJID": "XYZ"},  # 6: not in DM
        {"LBDY": 5.0, "LBSTRESN": np.nan, "LBORRES": "<0.1"},  # 7: not a number
        {
            "LBDY": 6.0,
            "LBSTRESN": np.nan,
            "LBORRES": "",
            "LBSTAT": "NOT DONE",
        },  # 8: not done, not a problem
        {"LBDY": 7.0, "LBSTRESN": 2.0},  # 9: fine
    ]
    small_sdtm(tmp_path, rows)
    code, output = run_import(tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 0, output
    labs = pd.read_csv(tmp_path / "study" / "labs.csv")
    assert labs["day"].tolist() == [2, 6]  # LBDY 3 (merged duplicates) and LBDY 7
    report = report_of(tmp_path)
    problems = [p["problem"] for p in report["problems"]]
    assert (
        "lb.csv, row 1, column 'LBSTRESU': unknown unit 'mmol/L' for test 'bilirubin'"
        in problems[0]
    )
    assert any(
        p.startswith("lb.csv, row 2, column 'LBSTRESN': conflicting duplicate") for p in problems
    )
    assert any(
        p.startswith("lb.csv, row 3, column 'LBSTRESN': conflicting duplicate") for p in problems
    )
    assert (
        "lb.csv, row 6, column 'USUBJID': USUBJID 'XYZ' is not in DM (LB row of an unknown subject)"
        in problems
    )
    assert (
        "lb.csv, row 7, column 'LBORRES': LBORRES '<0.1' is not a number (LBSTRESN is empty)"
        in problems
    )
    assert report["rows_not_imported"]["problems_by_reason"] == {
        "conflicting duplicate": 2, "not a number": 1, "patient not in DM": 1, "unknown unit": 1}  # fmt: skip
    assert report["rows_not_imported"]["left_out_by_rule"] == {
        "LB record marked NOT DONE (LBSTAT)": 1, "identical duplicate (merged into one row)": 1}  # fmt: skip
    assert "not imported (unknown unit): 1" in output
    assert (
        "lb.csv, row 1, column 'LBSTRESU'" in (tmp_path / "study" / "import_report.md").read_text()
    )

    # --strict: the same input is an error, every problem named, nothing written
    code, output = run_import(
        tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "strict", "--strict"
    )
    assert code == 2
    assert "5 problem(s)" in output and "lb.csv, row 7, column 'LBORRES'" in output
    assert not (tmp_path / "strict").exists()


def test_bad_dm_rows_leave_the_patient_out_with_its_rows_listed(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "U", "AGE": 50, "RFSTDTC": "2024-01-08"},
          {"USUBJID": "1", "SEX": "M", "AGE": "sixty", "RFSTDTC": "2024-01-08"},
          {"USUBJID": "2", "SEX": "M", "AGE": 61, "RFSTDTC": "2024-01-08"}]  # fmt: skip
    ex = [
        {
            "USUBJID": "2",
            "EXTRT": "MSC",
            "EXDOSE": 1.0,
            "EXDOSU": "10^8 cells",
            "EXSTDY": 1.0,
            "EXSTDTC": "",
        }
    ]
    small_sdtm(tmp_path, [{"LBDY": 1.0}, {"USUBJID": "2", "LBDY": 1.0}], dm=dm, ex=ex)
    code, output = run_import(tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 0, output
    assert pd.read_csv(tmp_path / "study" / "patients.csv")["patient_id"].tolist() == [2]
    problems = [p["problem"] for p in report_of(tmp_path)["problems"]]
    assert (
        "dm.csv, row 1, column 'SEX': SEX 'U' is neither 'F' nor 'M' (the scores need one of them)"
        in problems
    )
    assert "dm.csv, row 2, column 'AGE': AGE 'sixty' is not a number" in problems
    assert (
        "lb.csv, row 1, column 'USUBJID': patient '001' is not imported (see DM row 1)" in problems
    )


def test_regimen_from_msc_infusions_only(tmp_path):
    ex = [{"USUBJID": "001", "EXTRT": "hUC-MSCs", "EXDOSE": 1.0, "EXDOSU": "x10^8 cells", "EXSTDY": d, "EXSTDTC": ""}
          for d in (1.0, 8.0, 15.0)]  # fmt: skip
    ex += [
        {
            "USUBJID": "001",
            "EXTRT": "PLACEBO",
            "EXDOSE": 1.0,
            "EXDOSU": "mL",
            "EXSTDY": -3.0,
            "EXSTDTC": "",
        }
    ]
    ex += [{"USUBJID": "1", "EXTRT": "Mesenchymal stromal cells", "EXDOSE": d, "EXDOSU": "10*8{cells}",
            "EXSTDY": s, "EXSTDTC": ""} for d, s in ((1.0, 1.0), (2.0, 8.0))]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}], ex=ex)
    imported_labs(tmp_path)
    patients = pd.read_csv(
        tmp_path / "study" / "patients.csv", dtype={"patient_id": str}
    ).set_index("patient_id")
    assert patients.loc["001", ["dose_per_infusion", "n_infusions", "interval_days"]].tolist() == [
        1e8,
        3,
        7,
    ]
    assert (
        patients.loc["1", ["dose_per_infusion", "n_infusions"]].isna().all()
    )  # doses differ: listed
    problems = [p["problem"] for p in report_of(tmp_path)["problems"]]
    assert problems == ["ex.csv, row 6, column 'EXDOSE': the MSC doses of patient '1' differ between infusions "
                        "(1e+08, 2e+08 cells); the contract has one dose per infusion"]  # fmt: skip


# ----------------------------------------------------------------------------------------
# structural problems: exit 2, file and column named, nothing written


def test_missing_domain_stops_the_run(simulated, tmp_path):
    src = export_sdtm(simulated, tmp_path / "sdtm")
    (src / "lb.xpt").unlink()
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 2
    assert "lb.xpt: required domain LB is missing" in output
    assert not (tmp_path / "study").exists()
    src = export_sdtm(simulated, tmp_path / "sdtm2")
    (src / "fa.xpt").unlink()  # a domain the mapping file names
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert (
        code == 2
        and "required domain FA is missing" in output
        and "the mapping file places" in output
    )
    assert not (tmp_path / "study").exists()


def test_missing_variable_unreadable_file_and_two_formats_stop_the_run(tmp_path):
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}])
    lb = pd.read_csv(src / "lb.csv").drop(columns=["LBTESTCD"])
    lb.to_csv(src / "lb.csv", index=False)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 2 and "lb.csv, column 'LBTESTCD': required variable is missing" in output

    (src / "lb.csv").unlink()
    (src / "lb.xpt").write_bytes(b"not a SAS transport file" * 10)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 2 and "lb.xpt: cannot read the file" in output

    pd.DataFrame({"USUBJID": ["001"]}).to_csv(src / "LB.csv", index=False)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 2 and "domain LB is given twice" in output
    assert not (tmp_path / "study").exists()


def test_duplicate_usubjid_in_dm_stops_the_run(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "F", "AGE": 50}, {"USUBJID": "001", "SEX": "M", "AGE": 60}]
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}], dm=dm)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 2 and "dm.csv, row 2, column 'USUBJID': duplicate USUBJID '001'" in output


def test_a_bad_mapping_file_names_the_key(tmp_path):
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}])
    bad = tmp_path / "map.yaml"
    bad.write_text("findings:\n  ascites: {domain: FA}\n")
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", bad)
    assert code == 2 and "findings.ascites.testcd" in output
    bad.write_text("tests: {BILI: bilirubin}\nlabtests: {}\n")
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", bad)
    assert code == 2 and "labtests: unknown key" in output


# ----------------------------------------------------------------------------------------
# the output directory: atomic, never over what the user had


def test_out_is_never_written_over_foreign_files_and_earlier_imports_are_replaced(tmp_path):
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    code, output = run_import(src, "--from", "sdtm", "--out", mine)
    assert code == 2 and "is not empty and is not an earlier import's output" in output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    out = tmp_path / "study"
    assert run_import(src, "--from", "sdtm", "--out", out)[0] == 0
    first = (out / "labs.csv").read_text()
    pd.read_csv(src / "lb.csv").assign(LBSTRESN=3.0).to_csv(src / "lb.csv", index=False)
    assert run_import(src, "--from", "sdtm", "--out", out)[0] == 0  # an earlier import: replaced
    assert (out / "labs.csv").read_text() != first
    assert (
        sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    )  # no temporaries left

    (out / "extra.txt").write_text("added by the user")  # now it holds something of the user's
    code, output = run_import(src, "--from", "sdtm", "--out", out)
    assert code == 2 and (out / "extra.txt").exists()


def test_temporaries_of_a_killed_import_are_removed_by_the_next_one(tmp_path):
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}])
    dead = 2**22 + 12345  # above the default pid_max: no such process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    stale = tmp_path / f".study.import-{dead}-new-abcd1234"
    stale.mkdir()
    (stale / "labs.csv").write_text("partial")
    alive = tmp_path / f".study.import-{os.getpid()}-new-00000000"  # a running import's: kept
    alive.mkdir()
    assert run_import(src, "--from", "sdtm", "--out", tmp_path / "study")[0] == 0
    assert not stale.exists() and alive.exists()
