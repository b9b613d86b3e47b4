"""``msc-response import --from fhir``: round trips of a SIMULATED study, days, ids, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from export_helpers import (
    FHIR_MAPPING,
    LOINC,
    UCUM,
    assert_same_features,
    export_fhir,
    import_report,
    run_import,
)


def run_fhir(*args) -> tuple[int, str]:
    return run_import("--from", "fhir", *args)


@pytest.mark.parametrize("bundle", [False, True], ids=["ndjson", "bundle"])
def test_round_trip_gives_the_same_features(exportable_trial, tmp_path, bundle):
    src = export_fhir(exportable_trial, tmp_path / "fhir", bundle=bundle)
    code, output = run_fhir(src, "--out", tmp_path / "study", "--mapping", FHIR_MAPPING)
    assert code == 0, output
    assert_same_features(exportable_trial, tmp_path / "study")
    report = import_report(tmp_path / "study")
    assert report["problems"] == []
    assert report["rows_not_imported"]["left_out_by_rule"] == {
        "Observation 85354-9: not mapped and no numeric value": 1,
        "Observation with status 'entered-in-error' (no usable result)": 1,
    }
    assert report["resource_types_not_used"] == ["Organization"]
    became = {c["source_code"]: (c["became"], c["how"]) for c in report["codes"]}
    assert became["1975-2"] == ("bilirubin", "default") and became["14682-9"] == (
        "creatinine",
        "default",
    )
    assert became["777-3"] == ("platelets", "default")
    assert {"test": "inr", "unit_as_written": "{INR}", "unit_written": "ratio"}.items() <= next(
        c for c in report["unit_conversions"] if c["test"] == "inr"
    ).items()
    assert report["patients"]["patient_id"] == "Patient.id, exactly as written"


def resource(rtype: str, id_: str, **fields) -> dict:
    return {"resourceType": rtype, "id": id_, **fields}


def patient(pid="001", **fields):
    return resource("Patient", pid, **{"gender": "female", "birthDate": "1970-06-01", **fields})


def infusion(pid="001", date="2024-01-08", id_=None, dose=1.0, unit="10*8{cells}", **fields):
    return resource(
        "MedicationAdministration",
        id_ or f"msc-{pid}-{date[:10]}",
        status="completed",
        subject={"reference": f"Patient/{pid}"},
        medicationCodeableConcept={"text": "UC-MSC"},
        effectiveDateTime=date,
        dosage={"dose": {"value": dose, "system": UCUM, "code": unit}},
        **fields,
    )


def bilirubin(id_, pid="001", date="2024-01-08", value=2.0, unit="mg/dL", **fields):
    obs = resource(
        "Observation",
        id_,
        status="final",
        code={"coding": [{"system": LOINC, "code": "1975-2"}]},
        effectiveDateTime=date,
        **fields,
    )
    if pid is not None:
        obs["subject"] = {"reference": f"Patient/{pid}"}
    if value is not None:
        obs["valueQuantity"] = {"value": value, "system": UCUM, "code": unit}
    return obs


def write_ndjson(folder: Path, resources: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.ndjson").write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    return folder


def labs_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "labs.csv", dtype={"patient_id": str})


def test_days_count_from_the_first_msc_administration_or_the_index_date(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(date="2024-01-15"), infusion(date="2024-01-08T10:00:00+08:00"),
        bilirubin("b1", date="2024-01-07T23:30:00+08:00", value=1.0),  # local date as written
        bilirubin("b2", date="2024-01-08", value=2.0), bilirubin("b3", date="2024-01-09", value=3.0),
    ])  # fmt: skip
    assert run_fhir(src, "--out", tmp_path / "a")[0] == 0
    labs = labs_of(tmp_path / "a")
    assert dict(zip(labs["value"], labs["day"], strict=True)) == {1.0: -1, 2.0: 0, 3.0: 1}
    p = pd.read_csv(tmp_path / "a" / "patients.csv").iloc[0]
    assert (p["sex"], p["age_years"], p["n_infusions"], p["interval_days"]) == ("F", 53, 2, 7)
    assert p["dose_per_infusion"] == 1e8

    assert run_fhir(src, "--out", tmp_path / "b", "--index-date", "2024-01-01")[0] == 0
    labs = labs_of(tmp_path / "b")
    assert dict(zip(labs["value"], labs["day"], strict=True)) == {1.0: 6, 2.0: 7, 3.0: 8}
    days = import_report(tmp_path / "b")["days"]
    assert days["index_date"] == "2024-01-01" and days["patients_by_rule"]["--index-date"] == 1
    assert days["per_patient"] == [
        {"patient_id": "001", "day_0": "2024-01-01", "rule": "--index-date"}
    ]


def test_patient_id_from_an_identifier_system_kept_as_written(tmp_path):
    system = "urn:oid:1.2.3.4"
    src = write_ndjson(tmp_path / "fhir", [
        patient("p1", identifier=[{"system": "urn:other", "value": "X"}, {"system": system, "value": "007"}]),
        infusion("p1"), bilirubin("b1", pid="p1"),
    ])  # fmt: skip
    mapping = tmp_path / "map.yaml"
    mapping.write_text(f"format: fhir\npatient_id: {{identifier_system: '{system}'}}\n")
    code, output = run_fhir(src, "--out", tmp_path / "study", "--mapping", mapping)
    assert code == 0, output
    assert labs_of(tmp_path / "study")["patient_id"].tolist() == ["007"]
    patients = pd.read_csv(tmp_path / "study" / "patients.csv", dtype={"patient_id": str})
    assert patients["patient_id"].tolist() == ["007"]


def test_row_problems_name_the_resource_and_element(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(),
        bilirubin("no-subject", pid=None),
        bilirubin("no-value", value=None),
        bilirubin("bad-unit", unit="mmol/L"),
        bilirubin("unknown-patient", pid="999"),
        bilirubin("bound", date="2024-01-09")
        | {"valueQuantity": {"value": 0.1, "comparator": "<", "code": "mg/dL", "system": UCUM}},
        resource("Observation", "no-status", code={"text": "x"}, subject={"reference": "Patient/001"}),
        bilirubin("dup-1", date="2024-01-10", value=2.0), bilirubin("dup-2", date="2024-01-10", value=2.4),
        bilirubin("ok", date="2024-01-11", value=1.5),
        bilirubin("absent", date="2024-01-12", value=None, dataAbsentReason={"text": "not done"}),
    ])  # fmt: skip
    code, output = run_fhir(src, "--out", tmp_path / "study")
    assert code == 0, output
    assert labs_of(tmp_path / "study")["value"].tolist() == [1.5]
    report = import_report(tmp_path / "study")
    problems = [p["problem"] for p in report["problems"]]
    expected = [
        "export.ndjson: Observation/no-subject, element 'subject': no subject: the resource names no patient",
        "export.ndjson: Observation/no-value, element 'value[x]': no value: neither valueQuantity.value nor valueInteger",
        "export.ndjson: Observation/unknown-patient, element 'subject': subject 'Patient/999' is not among the Patient resources",
        "export.ndjson: Observation/bound, element 'valueQuantity.comparator': value <0.1 is a bound, not a measurement",
        "export.ndjson: Observation/no-status, element 'status': not a valid FHIR Observation: Value for the field 'status' is required.",
    ]  # fmt: skip
    for e in expected:
        assert e in problems, problems
    assert any(p.startswith("export.ndjson: Observation/bad-unit, element 'valueQuantity.code': unknown unit 'mmol/L'")
               for p in problems)  # fmt: skip
    assert sum("conflicting duplicate" in p for p in problems) == 2
    assert report["rows_not_imported"]["left_out_by_rule"] == {
        "Observation with a dataAbsentReason instead of a value": 1
    }
    code, output = run_fhir(src, "--out", tmp_path / "strict", "--strict")
    assert code == 2 and "Observation/no-subject" in output
    assert not (tmp_path / "strict").exists()


def test_a_patient_without_msc_administration_needs_an_index_date(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(), bilirubin("b1"),
        patient("002"), bilirubin("b2", pid="002"),
    ])  # fmt: skip
    assert run_fhir(src, "--out", tmp_path / "study")[0] == 0
    problems = [p["problem"] for p in import_report(tmp_path / "study")["problems"]]
    assert (
        "export.ndjson: Patient/002: no day 0: no MSC MedicationAdministration for this patient; give "
        "--index-date DATE (one day 0 for everyone), --index-dates FILE.csv (patient_id,index_date) or "
        "--index-event SYSTEM|CODE (the first resource carrying that code)" in problems
    )
    # the patient's rows: one decision about the patient, counted per file and reason
    report = import_report(tmp_path / "study")
    assert not any("Observation/b2" in p for p in problems)
    assert report["rows_not_imported"]["of_patients_not_imported"] == [
        {"file": "export.ndjson", "why": "no day 0", "rows": 1}
    ]
    assert report["rows_not_imported"]["problems_by_reason"]["patient not imported"] == 1
    assert (
        "| export.ndjson | no day 0 | 1 |" in (tmp_path / "study" / "import_report.md").read_text()
    )
    assert pd.read_csv(tmp_path / "study" / "patients.csv", dtype={"patient_id": str})[
        "patient_id"
    ].tolist() == ["001"]

    assert run_fhir(src, "--out", tmp_path / "indexed", "--index-date", "2024-01-01")[0] == 0
    patients = pd.read_csv(
        tmp_path / "indexed" / "patients.csv", dtype={"patient_id": str}
    ).set_index("patient_id")
    assert patients.loc["002", "n_infusions"] == 0 and patients.loc["001", "n_infusions"] == 1


def test_structural_problems_stop_the_run_and_write_nothing(tmp_path):
    out = tmp_path / "study"
    no_obs = write_ndjson(tmp_path / "a", [patient(), infusion()])
    code, output = run_fhir(no_obs, "--out", out)
    assert code == 2 and "no Observation resource in the source (required)" in output

    no_admin = write_ndjson(tmp_path / "b", [patient(), bilirubin("b1")])
    code, output = run_fhir(no_admin, "--out", out)
    assert (
        code == 2 and "give --index-date DATE" in output and "--index-event SYSTEM|CODE" in output
    )

    broken = write_ndjson(tmp_path / "c", [patient(), infusion(), bilirubin("b1")])
    with (broken / "export.ndjson").open("a") as f:
        f.write('{"resourceType": "Observation", \n')
    code, output = run_fhir(broken, "--out", out)
    assert code == 2 and "export.ndjson, row 4: not valid JSON" in output

    twice = write_ndjson(
        tmp_path / "d", [patient(), patient(gender="male"), infusion(), bilirubin("b1")]
    )
    code, output = run_fhir(twice, "--out", out)
    assert code == 2 and "repeats the id of one in export.ndjson with different content" in output
    assert "001" not in output

    code, output = run_fhir(tmp_path / "missing", "--out", out)
    assert code == 2 and "FHIR source not found" in output
    code, output = run_fhir(no_obs, "--out", out, "--index-date", "2024-02-30")
    assert code == 2 and "--index-date: expected a date YYYY-MM-DD, got '2024-02-30'" in output
    assert not out.exists()


# ----------------------------------------------------------------------------------------
# EHR exports (issue 20): no MSC administration, day 0 per patient, deaths, vital signs


def other_drug(pid="001", date="2024-01-05", id_=None):
    return resource("MedicationAdministration", id_ or f"furo-{pid}", status="completed",
                    subject={"reference": f"Patient/{pid}"}, effectiveDateTime=date,
                    medicationCodeableConcept={"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                           "code": "4603", "display": "Furosemide"}]})  # fmt: skip


def valid_study(out: Path):
    from msc_response.study import load_study

    study = load_study(out)
    assert study.problems.empty, study.problems.to_dict("records")
    return study


@pytest.mark.parametrize("administrations", [[], [other_drug()]], ids=["none", "only-non-msc"])
def test_without_msc_administrations_day_0_comes_from_an_option(tmp_path, administrations):
    src = write_ndjson(
        tmp_path / "fhir", [patient(), bilirubin("b1", date="2024-01-09"), *administrations]
    )
    code, output = run_fhir(src, "--out", tmp_path / "none")
    assert code == 2, output  # no traceback: the options are named
    for option in ("--index-date DATE", "--index-dates FILE.csv", "--index-event SYSTEM|CODE"):
        assert option in output
    assert not (tmp_path / "none").exists()
    code, output = run_fhir(src, "--out", tmp_path / "study", "--index-date", "2024-01-01")
    assert code == 0, output
    assert labs_of(tmp_path / "study")["day"].tolist() == [8]
    assert "day 0 from --index-date: 1 patients" in output
    valid_study(tmp_path / "study")


def test_index_dates_file_sets_day_0_per_patient_with_ids_as_written(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient("001"), patient("1", gender="male"), patient("7"),
        bilirubin("a", pid="001", date="2024-01-09"), bilirubin("b", pid="1", date="2024-01-09"),
        bilirubin("c", pid="7", date="2024-01-09"),
    ])  # fmt: skip
    (tmp_path / "index.csv").write_text("patient_id,index_date\n001,2024-01-01\n1,2024-01-08\n")
    code, output = run_fhir(
        src, "--out", tmp_path / "study", "--index-dates", tmp_path / "index.csv"
    )
    assert code == 0, output
    labs = labs_of(tmp_path / "study")
    assert dict(zip(labs["patient_id"], labs["day"], strict=True)) == {"001": 8, "1": 1}
    report = import_report(tmp_path / "study")
    assert report["days"]["patients_by_rule"] == {
        "--index-dates file": 2,
        "first MSC administration": 0,
    }
    assert report["days"]["patients_without_day_0 (not imported)"] == 1
    assert {(p["patient_id"], p["day_0"]) for p in report["days"]["per_patient"]} == {
        ("001", "2024-01-01"),
        ("1", "2024-01-08"),
    }
    assert "day 0 from --index-dates file: 2 patients" in output
    for pid in ("001", "'1'", "Patient/7"):  # per-patient detail only in the report file
        assert pid not in output
    valid_study(tmp_path / "study")

    (tmp_path / "bad.csv").write_text(
        "patient_id,index_date\n001,2024-13-01\n1,2024-01-01\n1,2024-01-02\n"
    )
    code, output = run_fhir(src, "--out", tmp_path / "bad", "--index-dates", tmp_path / "bad.csv")
    assert code == 2 and "bad.csv, row 1, column 'index_date': '2024-13-01' is not a date" in output
    assert "bad.csv, row 3, column 'patient_id': patient_id given twice" in output
    (tmp_path / "cols.csv").write_text("id,date\n001,2024-01-01\n")
    code, output = run_fhir(src, "--out", tmp_path / "bad", "--index-dates", tmp_path / "cols.csv")
    assert code == 2 and "cols.csv, column 'patient_id': required column is missing" in output
    code, output = run_fhir(
        src, "--out", tmp_path / "bad", "--index-dates", tmp_path / "absent.csv"
    )
    assert code == 2 and "absent.csv: cannot read the file" in output
    assert not (tmp_path / "bad").exists()


def test_index_event_is_the_first_resource_carrying_the_code(tmp_path):
    snomed = "http://snomed.info/sct"
    proc = lambda id_, pid, date, code="18286008", status="completed": resource(  # noqa: E731
        "Procedure", id_, status=status, subject={"reference": f"Patient/{pid}"}, performedDateTime=date,
        code={"coding": [{"system": snomed, "code": code}]})  # fmt: skip
    enc = resource("Encounter", "e1", status="finished", subject={"reference": "Patient/1"},
                   type=[{"coding": [{"system": snomed, "code": "18286008"}]}],
                   period={"start": "2024-01-03T09:00:00Z"}, **{"class": {"code": "AMB"}})  # fmt: skip
    src = write_ndjson(tmp_path / "fhir", [
        patient("001"), patient("1", gender="male"),
        proc("p1", "001", "2024-01-05"), proc("p2", "001", "2024-01-02", status="not-done"),
        proc("p3", "001", "2024-01-01", code="other"), enc,
        bilirubin("a", pid="001", date="2024-01-09"), bilirubin("b", pid="1", date="2024-01-09"),
    ])  # fmt: skip
    code, output = run_fhir(src, "--out", tmp_path / "study", "--index-event", f"{snomed}|18286008")
    assert code == 0, output
    labs = labs_of(tmp_path / "study")
    assert dict(zip(labs["patient_id"], labs["day"], strict=True)) == {"001": 4, "1": 6}
    days = import_report(tmp_path / "study")["days"]
    assert days["patients_by_rule"]["--index-event"] == 2
    assert (
        days["resources_carrying_the_code"]["Procedure"] == 1
        and days["resources_carrying_the_code"]["Encounter"] == 1
    )
    code, output = run_fhir(src, "--out", tmp_path / "x", "--index-event", "|")
    assert code == 2 and "--index-event: expected SYSTEM|CODE" in output


def test_age_at_day_0_from_birth_date_and_deceased_before_day_0_excluded(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient("001", birthDate="1970-06-01"), infusion("001", date="2024-01-08"), bilirubin("a", pid="001"),
        patient("002", birthDate="1930-01-01", deceasedDateTime="1999-05-01T00:00:00Z"),
        infusion("002", date="2024-01-08"), bilirubin("b", pid="002"),
    ])  # fmt: skip
    code, output = run_fhir(src, "--out", tmp_path / "study")
    assert code == 0, output
    study = valid_study(tmp_path / "study")
    assert study.patients[["patient_id", "age_years"]].values.tolist() == [["001", 53.0]]
    report = import_report(tmp_path / "study")
    assert report["patients"]["deceased_before_day_0 (deceasedDateTime, not imported)"] == 1
    assert (
        report["rows_not_imported"]["left_out_by_rule"]["rows of a patient deceased before day 0"]
        == 1
    )


def test_vital_signs_are_not_labs(tmp_path):
    vital = lambda id_, code, value, unit: resource(  # noqa: E731
        "Observation", id_, status="final", subject={"reference": "Patient/001"}, effectiveDateTime="2024-01-09",
        category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                               "code": "vital-signs"}]}],
        code={"coding": [{"system": LOINC, "code": code}]}, valueQuantity={"value": value, "unit": unit})  # fmt: skip
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(), bilirubin("b1"), vital("v1", "29463-7", 70.0, "kg"), vital("v2", "8867-4", 80, "/min"),
        resource("Observation", "c1", status="final", subject={"reference": "Patient/001"},
                 effectiveDateTime="2024-01-09", code={"coding": [{"system": LOINC, "code": "38483-4",
                                                                   "display": "Creatinine"}]},
                 category=[{"coding": [{"code": "laboratory"}]}],
                 valueQuantity={"value": 1.1, "system": UCUM, "code": "mg/dL"}),
    ])  # fmt: skip
    code, output = run_fhir(src, "--out", tmp_path / "study")
    assert code == 0, output
    assert set(labs_of(tmp_path / "study")["test"]) == {
        "bilirubin",
        "creatinine",
    }  # 38483-4 is a default
    left_out = import_report(tmp_path / "study")["rows_not_imported"]["left_out_by_rule"]
    assert left_out["Observation of category 'vital-signs', not mapped (not a lab)"] == 2


def test_unresolved_references_import_nothing_and_exit_2(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(pid="001"),
        *[bilirubin(f"b{i}", pid=None, subject={"reference": f"urn:uuid:{i}"}) for i in range(3)],
    ])  # fmt: skip
    code, output = run_fhir(src, "--out", tmp_path / "study")
    assert code == 2, output
    assert (
        "nothing to import: 1 patients, 0 lab rows" in output and "patient not found: 3" in output
    )
    assert not (tmp_path / "study").exists()


def test_an_absent_test_points_at_local_codes_whose_display_looks_like_it(tmp_path):
    local = resource("Observation", "c1", status="final", subject={"reference": "Patient/001"},
                     effectiveDateTime="2024-01-09",
                     code={"coding": [{"system": "urn:site", "code": "CR-B", "display": "Creatinine [Mass/volume] in Blood"}]},
                     valueQuantity={"value": 1.1, "system": UCUM, "code": "mg/dL"})  # fmt: skip
    request = resource("MedicationRequest", "r1", status="active", intent="order", authoredOn="2024-01-08",
                       subject={"reference": "Patient/001"},
                       medicationCodeableConcept={"coding": [{"system": "urn:drug", "code": "D1"}]})  # fmt: skip
    src = write_ndjson(
        tmp_path / "fhir", [patient(), bilirubin("b1", date="2024-01-09"), local, request]
    )
    code, output = run_fhir(src, "--out", tmp_path / "study", "--index-event", "urn:drug|D1")
    assert code == 0, output
    assert labs_of(tmp_path / "study")["day"].tolist() == [1, 1]  # day 0: the MedicationRequest
    report = import_report(tmp_path / "study")
    assert report["absent_tests_look_alikes"]["creatinine"] == [{
        "source_code": "urn:site|CR-B", "display": "Creatinine [Mass/volume] in Blood", "rows": 1,
        "became": "urn:site|CR-B"}]  # fmt: skip
    assert "creatinine may be 'urn:site|CR-B'" in output
    valid_study(tmp_path / "study")
