"""``msc-response import --from sdtm``: round trips of a SIMULATED study, study days, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TRIAL_PATIENTS
from export_helpers import (
    SDTM_MAPPING,
    assert_same_features,
    export_sdtm,
    import_report,
    run_import,
    sdtm_study_day,
    write_domains,
)
from msc_response.importers.sdtm import elapsed_since_reference

# ----------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("version", [5, 8])
def test_xpt_round_trip_gives_the_same_features(exportable_trial, tmp_path, version):
    src = export_sdtm(exportable_trial, tmp_path / "sdtm", version=version)
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 0, output
    assert_same_features(exportable_trial, tmp_path / "study")
    report = import_report(tmp_path / "study")
    assert report["problems"] == [] and report["rows_not_imported"]["problems_by_reason"] == {}
    assert report["written"]["cell_rows"] == len(pd.read_csv(exportable_trial / "cells.csv"))
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
    exportable_trial, tmp_path, fmt
):
    # RFSTDTC 7 days before the first infusion (screening): LBDY 8 is the infusion day
    src = export_sdtm(exportable_trial, tmp_path / "sdtm", fmt=fmt, reference="screening")
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 0, output
    assert_same_features(exportable_trial, tmp_path / "study")
    report = import_report(tmp_path / "study")
    assert (
        report["days"]["patients_whose_reference_start_is_not_the_first_infusion"] == TRIAL_PATIENTS
    )


def test_without_a_mapping_file_ascites_encephalopathy_dialysis_are_absent_and_said_so(
    exportable_trial, tmp_path
):
    src = export_sdtm(exportable_trial, tmp_path / "sdtm", version=8)
    code, output = run_import(src, "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 0, output
    labs = pd.read_csv(tmp_path / "study" / "labs.csv")
    assert not {"ascites", "encephalopathy", "dialysis"} & set(labs["test"])
    assert {"ALT", "MX1MONO"} <= set(labs["test"])  # kept under their own codes
    assert "platelets" in set(labs["test"]) and "PLAT" not in set(labs["test"])  # a default now
    report = import_report(tmp_path / "study")
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
    report = import_report(tmp_path / "study")
    assert (
        report["problems"][0]["reason"] == "infusion day unknown"
    )  # the EX record itself is listed
    assert report["days"]["patients_anchored_on_RFXSTDTC (EX has no day or date)"] == 1


def test_study_day_0_is_a_row_problem(tmp_path):
    small_sdtm(tmp_path, [{"LBDY": 0.0}, {"LBDY": 1.0, "LBSTRESN": 3.0}])
    labs = imported_labs(tmp_path)
    assert labs["day"].tolist() == [0]
    report = import_report(tmp_path / "study")
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
    assert labs.loc["BILI_URINE", "unit"] == "mg/dL"  # not the serum bilirubin the scores use
    assert labs.loc["GGT", ["value", "unit"]].tolist() == [80.0, "U/L"]


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
    report = import_report(tmp_path / "study")
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
        "lb.csv, row 6, column 'USUBJID': USUBJID is not in DM (LB row of an unknown subject)"
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
    problems = [p["problem"] for p in import_report(tmp_path / "study")["problems"]]
    assert (
        "dm.csv, row 1, column 'SEX': SEX 'U' is neither 'F' nor 'M' (the scores need one of them)"
        in problems
    )
    assert (
        "dm.csv, row 2, column 'AGE': AGE 'sixty' is neither a number nor an ISO 8601 duration (P45Y)"
        in problems
    )
    assert import_report(tmp_path / "study")["rows_not_imported"]["of_patients_not_imported"] == [
        {"file": "lb.csv", "why": "see DM row 1", "rows": 1}
    ]


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
    problems = [p["problem"] for p in import_report(tmp_path / "study")["problems"]]
    assert problems == ["ex.csv, row 6, column 'EXDOSE': the MSC doses of this patient differ between infusions "
                        "(1e+08, 2e+08 cells); the contract has one dose per infusion"]  # fmt: skip


# ----------------------------------------------------------------------------------------
# structural problems: exit 2, file and column named, nothing written


def test_missing_domain_stops_the_run(exportable_trial, tmp_path):
    src = export_sdtm(exportable_trial, tmp_path / "sdtm")
    (src / "lb.xpt").unlink()
    code, output = run_import(
        src, "--from", "sdtm", "--out", tmp_path / "study", "--mapping", SDTM_MAPPING
    )
    assert code == 2
    assert "lb.xpt: required domain LB is missing" in output
    assert not (tmp_path / "study").exists()
    src = export_sdtm(exportable_trial, tmp_path / "sdtm2")
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
    assert code == 2 and "dm.csv, row 2, column 'USUBJID': duplicate USUBJID (rows 1, 2)" in output


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


# ----------------------------------------------------------------------------------------
# real deliveries (issue 20): what the CDISC pilot and sponsors' SAS files hold


def imported_study(tmp_path, *extra):
    """Import ``tmp_path/sdtm``; the output must pass the project's own reader untouched."""
    from msc_response.study import load_study

    code, output = run_import(
        tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study", *extra
    )
    assert code == 0, output
    study = load_study(tmp_path / "study")
    assert study.problems.empty, study.problems.to_dict("records")
    return study, import_report(tmp_path / "study"), output


def test_urinalysis_and_specimens_give_a_valid_study_with_every_row_accounted_for(tmp_path):
    rows = [  # one patient, day 1: the CDISC pilot's urinalysis and a second specimen
        {"LBTESTCD": "ALB", "LBSPEC": "SERUM", "LBSTRESN": 38.0, "LBSTRESU": "g/L"},
        {"LBTESTCD": "ALB", "LBSPEC": "URINE", "LBSTRESN": 2.0, "LBSTRESU": "mg/dL"},
        {"LBTESTCD": "PROT", "LBSPEC": "SERUM", "LBSTRESN": 7.0, "LBSTRESU": "g/dL"},
        {"LBTESTCD": "PROT", "LBSPEC": "URINE", "LBSTRESN": 15.0, "LBSTRESU": "mg/dL"},
        {"LBTESTCD": "BILI", "LBSPEC": "URINE", "LBSTRESN": 0.5, "LBSTRESU": "mg/dL"},
        {"LBTESTCD": "SPGRAV", "LBSPEC": "URINE", "LBSTRESN": 1.02, "LBSTRESU": ""},
        {"LBTESTCD": "PH", "LBSPEC": "URINE", "LBSTRESN": 6.0, "LBSTRESU": ""},
        {"LBTESTCD": "COLOR", "LBSPEC": "URINE", "LBSTRESN": np.nan, "LBSTRESU": "", "LBORRES": "YELLOW",
         "LBSTRESC": "YELLOW"},
        {"LBTESTCD": "KETONES", "LBSPEC": "URINE", "LBSTRESN": np.nan, "LBSTRESU": "", "LBORRES": "NEGATIVE",
         "LBSTRESC": "NEGATIVE"},
        {"LBTESTCD": "GLUC", "LBSTRESN": np.nan, "LBSTRESU": "", "LBORRES": "", "LBSTAT": "NOT DONE"},
        {"LBTESTCD": "PLAT", "LBSTRESN": 150.0, "LBSTRESU": "10^9/L"},
        # a value the reader would refuse (albumin 38 labelled g/dL): not written, but listed
        {"LBTESTCD": "ALB", "LBSPEC": "SERUM", "LBSTRESN": 38.0, "LBSTRESU": "g/dL", "LBDY": 2.0},
    ]  # fmt: skip
    small_sdtm(
        tmp_path, [{"LBDY": 1.0, "LBORRES": "", "LBSTAT": "", "LBSTRESC": "", **r} for r in rows]
    )
    study, report, output = imported_study(tmp_path)
    labs = pd.read_csv(tmp_path / "study" / "labs.csv", dtype={"patient_id": str}).set_index("test")
    assert labs.loc["albumin", ["value", "unit"]].tolist() == [38.0, "g/L"]
    assert labs.loc["ALB_URINE", "unit"] == "mg/dL" and labs.loc["BILI_URINE", "unit"] == "mg/dL"
    assert labs.loc["PROT", "unit"] == "g/dL" and labs.loc["PROT_URINE", "unit"] == "mg/dL"
    assert (
        labs.loc["SPGRAV_URINE", "unit"] == "1" and labs.loc["PH_URINE", "unit"] == "1"
    )  # dimensionless
    assert labs.loc["platelets", "unit"] == "10^9/L"  # PLAT is a default now
    assert not {"COLOR_URINE", "KETONES_URINE", "GLUC"} & set(labs.index)
    left_out = report["rows_not_imported"]["left_out_by_rule"]
    assert left_out["LB text result, not a number (COLOR_URINE)"] == 1
    assert left_out["LB text result, not a number (KETONES_URINE)"] == 1
    assert left_out["LB record marked NOT DONE (LBSTAT)"] == 1
    rejected = [p["problem"] for p in report["problems"]]
    assert rejected == ["lb.csv, row 12, column 'LBSTRESN': albumin value 38.0 g/dL is not plausible "
                        "(expected within 0.5-7 g/dL); a value of this size looks like g/L, not g/dL"]  # fmt: skip
    assert report["rows_not_imported"]["problems_by_reason"] == {
        "rejected by the study contract: implausible value": 1
    }
    assert "001" not in output  # no patient id on the console


def test_a_latin1_byte_in_a_variable_the_import_does_not_use_is_no_error(tmp_path):
    small_sdtm(tmp_path, [{"LBDY": 1.0}], fmt="xpt")
    ex = tmp_path / "sdtm" / "ex.xpt"
    import pyreadstat

    df, _ = pyreadstat.read_xport(ex)
    df["EXCOM"] = ["StraXe", ""]  # a comment the import never reads, written on Windows
    pyreadstat.write_xport(df, ex, table_name="EX", file_format_version=5)
    ex.write_bytes(ex.read_bytes().replace(b"StraXe", b"Stra\xdfe"))  # Latin-1 sharp s
    with pytest.raises(UnicodeDecodeError):
        pyreadstat.read_xport(ex)  # the whole file is not UTF-8
    _, report, _ = imported_study(tmp_path)
    assert "encoding_note" not in report["files"]["EX"]


def test_a_latin1_byte_in_a_used_variable_is_read_as_latin1_with_a_note_or_as_told(tmp_path):
    ex = [{"USUBJID": p, "EXTRT": "UC-MSC Zelle", "EXDOSE": 1.0, "EXDOSU": "10^8 cells",
           "EXSTDTC": "2024-01-08", "EXSTDY": 1.0} for p in ("001", "1")]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}], ex=ex, fmt="xpt")
    path = tmp_path / "sdtm" / "ex.xpt"
    path.write_bytes(path.read_bytes().replace(b"Zelle", b"Z\xe9lle"))
    _, report, output = imported_study(tmp_path)
    assert "read as Latin-1" in report["files"]["EX"]["encoding_note"]
    assert report["treatments"][0]["EXTRT"] == "UC-MSC Zélle"
    assert "read as Latin-1" in output
    study, report, _ = imported_study(tmp_path, "--encoding", "latin1")
    assert (
        report["files"]["EX"]["encoding"] == "latin1"
        and "encoding_note" not in report["files"]["EX"]
    )
    code, output = run_import(
        tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "s2", "--encoding", "utf-8"
    )
    assert code == 2 and "ex.xpt: cannot read the file with --encoding 'utf-8'" in output
    code, output = run_import(
        tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "s2", "--encoding", "klingon"
    )
    assert code == 2 and "--encoding: unknown text encoding 'klingon'" in output
    assert not (tmp_path / "s2").exists()


def test_a_latin1_csv_domain_is_read_with_a_note(tmp_path):
    small_sdtm(tmp_path, [{"LBDY": 1.0, "LBTEST": "Bilirubin gesamt"}])
    lb = tmp_path / "sdtm" / "lb.csv"
    lb.write_bytes(lb.read_bytes().replace(b"gesamt", b"gesa\xdft"))
    _, report, _ = imported_study(tmp_path)
    assert "read as Latin-1" in report["files"]["LB"]["encoding_note"]


@pytest.mark.parametrize("age, ageu, years", [
    (45, "YEARS", 45.0), (18, "MONTHS", 1.5), (52, "WEEKS", 52 * 7 / 365.25), (730.5, "DAYS", 2.0),
    ("P45Y", "", 45.0), ("P6M", "", 0.5), ("P2Y6M", "", 2.5),
])  # fmt: skip
def test_ages_in_months_weeks_days_and_iso_durations_are_years(tmp_path, age, ageu, years):
    dm = [{"USUBJID": "001", "SEX": "F", "AGE": age, "AGEU": ageu, "RFSTDTC": "2024-01-08"},
          {"USUBJID": "1", "SEX": "M", "AGE": 60, "AGEU": "YEARS", "RFSTDTC": "2024-01-08"}]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}], dm=dm)
    study, report, _ = imported_study(tmp_path)
    age_of = dict(zip(study.patients["patient_id"], study.patients["age_years"], strict=True))
    assert age_of["001"] == pytest.approx(years) and age_of["1"] == 60.0


def test_an_unknown_age_unit_leaves_that_patient_out(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "F", "AGE": 3, "AGEU": "DECADES", "RFSTDTC": "2024-01-08"},
          {"USUBJID": "1", "SEX": "M", "AGE": 60, "AGEU": "YEARS", "RFSTDTC": "2024-01-08"}]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}, {"USUBJID": "1", "LBDY": 1.0}], dm=dm)
    study, report, _ = imported_study(tmp_path)
    assert study.patients["patient_id"].tolist() == ["1"]
    assert report["rows_not_imported"]["problems_by_reason"]["unknown age unit"] == 1


def test_a_patient_deceased_before_day_0_is_excluded_and_counted(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "F", "AGE": 50, "RFSTDTC": "2024-01-08", "DTHDTC": "1990-05-01"},
          {"USUBJID": "1", "SEX": "M", "AGE": 60, "RFSTDTC": "2024-01-08", "DTHDTC": "2024-03-01"}]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}, {"USUBJID": "1", "LBDY": 1.0}], dm=dm)
    study, report, _ = imported_study(tmp_path)
    assert study.patients["patient_id"].tolist() == ["1"]  # died after day 0: imported
    assert report["patients"]["deceased_before_day_0 (DM.DTHDTC, not imported)"] == 1
    left_out = report["rows_not_imported"]["left_out_by_rule"]
    assert left_out["patient deceased before day 0 (patients, not imported)"] == 1
    assert left_out["rows of a patient deceased before day 0"] == 1


def test_an_absent_test_points_at_the_codes_that_look_like_it(tmp_path):
    rows = [{"LBDY": 1.0},
            {"LBDY": 1.0, "LBTESTCD": "CREATBLD", "LBTEST": "Creatinine [Mass/volume] in Blood",
             "LBSTRESN": 1.1, "LBSTRESU": "mg/dL"}]  # fmt: skip
    small_sdtm(tmp_path, rows)
    _, report, output = imported_study(tmp_path)
    assert report["absent_tests_look_alikes"]["creatinine"] == [{
        "source_code": "LB CREATBLD", "display": "Creatinine [Mass/volume] in Blood", "rows": 1,
        "became": "CREATBLD"}]  # fmt: skip
    assert "creatinine may be 'LB CREATBLD' (Creatinine [Mass/volume] in Blood, 1 rows)" in output


def test_nothing_to_import_exits_2_with_the_reasons_counted(tmp_path):
    rows = [{"LBDY": 1.0, "LBTESTCD": "COLOR", "LBSTRESN": np.nan, "LBORRES": "YELLOW", "LBSTRESU": ""},
            {"LBDY": 1.0, "LBTESTCD": "GGT", "LBSTRESN": 40.0, "LBSTRESU": "U/L"}]  # fmt: skip
    small_sdtm(tmp_path, rows)
    code, output = run_import(tmp_path / "sdtm", "--from", "sdtm", "--out", tmp_path / "study")
    assert code == 2, output
    assert "nothing to import: 2 patients, 1 lab rows, 0 patients with a contract test" in output
    assert "LB text result, not a number (COLOR): 1" in output
    assert not (tmp_path / "study").exists()


def test_agetxt_ranges_stand_in_for_a_missing_age_as_their_midpoint(tmp_path):
    dm = [{"USUBJID": "001", "SEX": "F", "AGETXT": "6-7", "AGEU": "WEEKS", "RFSTDTC": "2024-01-08"},
          {"USUBJID": "1", "SEX": "M", "AGETXT": "8", "AGEU": "WEEKS", "RFSTDTC": "2024-01-08"}]  # fmt: skip
    small_sdtm(tmp_path, [{"LBDY": 1.0}], dm=dm)
    study, report, _ = imported_study(tmp_path)
    assert study.patients["age_years"].tolist() == pytest.approx([6.5 * 7 / 365.25, 8 * 7 / 365.25])
    assert report["ages"]["ranges_read_as_their_midpoint"] == 1


def test_lb_split_by_category_is_read_as_one_domain(tmp_path):
    src = small_sdtm(tmp_path, [{"LBDY": 1.0}])
    lb = pd.read_csv(src / "lb.csv", dtype=str, keep_default_na=False)
    (src / "lb.csv").unlink()
    lb.to_csv(src / "lbch.csv", index=False)
    urine = lb.assign(LBTESTCD="PH", LBSPEC="URINE", LBSTRESN="6.0", LBSTRESU="")
    urine.to_csv(src / "lbur.csv", index=False)
    pd.DataFrame({"USUBJID": ["001"], "QNAM": ["X"]}).to_csv(
        src / "supplb.csv", index=False
    )  # not LB data
    study, report, _ = imported_study(tmp_path)
    assert report["lb_datasets"] == ["LBCH", "LBUR"]
    assert sorted(study.labs["test"].astype(str)) == ["PH_URINE", "bilirubin"]
