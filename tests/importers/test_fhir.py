"""``msc-response import --from fhir``: round trips of a SIMULATED study, days, ids, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from export_helpers import (
    FHIR_MAPPING,
    LOINC,
    UCUM,
    assert_same_features,
    export_fhir,
    simulate_study,
)
from msc_response.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    return simulate_study(tmp_path_factory.mktemp("sim") / "trial", seed=12)


def run_import(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["import", "--from", "fhir", *map(str, args)])
    return result.exit_code, result.output + (
        result.stderr if result.stderr_bytes is not None else ""
    )


def report_of(out: Path) -> dict:
    return json.loads((out / "import_report.json").read_text())


@pytest.mark.parametrize("bundle", [False, True], ids=["ndjson", "bundle"])
def test_round_trip_gives_the_same_features(simulated, tmp_path, bundle):
    src = export_fhir(simulated, tmp_path / "fhir", bundle=bundle)
    code, output = run_import(src, "--out", tmp_path / "study", "--mapping", FHIR_MAPPING)
    assert code == 0, output
    assert_same_features(simulated, tmp_path / "study")
    report = report_of(tmp_path / "study")
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
    assert became["777-3"] == ("platelets", "mapping file")
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
    assert run_import(src, "--out", tmp_path / "a")[0] == 0
    labs = labs_of(tmp_path / "a")
    assert dict(zip(labs["value"], labs["day"], strict=True)) == {1.0: -1, 2.0: 0, 3.0: 1}
    p = pd.read_csv(tmp_path / "a" / "patients.csv").iloc[0]
    assert (p["sex"], p["age_years"], p["n_infusions"], p["interval_days"]) == ("F", 53, 2, 7)
    assert p["dose_per_infusion"] == 1e8

    assert run_import(src, "--out", tmp_path / "b", "--index-date", "2024-01-01")[0] == 0
    labs = labs_of(tmp_path / "b")
    assert dict(zip(labs["value"], labs["day"], strict=True)) == {1.0: 6, 2.0: 7, 3.0: 8}
    assert report_of(tmp_path / "b")["days"]["rule"].startswith("days from --index-date 2024-01-01")


def test_patient_id_from_an_identifier_system_kept_as_written(tmp_path):
    system = "urn:oid:1.2.3.4"
    src = write_ndjson(tmp_path / "fhir", [
        patient("p1", identifier=[{"system": "urn:other", "value": "X"}, {"system": system, "value": "007"}]),
        infusion("p1"), bilirubin("b1", pid="p1"),
    ])  # fmt: skip
    mapping = tmp_path / "map.yaml"
    mapping.write_text(f"format: fhir\npatient_id: {{identifier_system: '{system}'}}\n")
    code, output = run_import(src, "--out", tmp_path / "study", "--mapping", mapping)
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
    code, output = run_import(src, "--out", tmp_path / "study")
    assert code == 0, output
    assert labs_of(tmp_path / "study")["value"].tolist() == [1.5]
    report = report_of(tmp_path / "study")
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
    code, output = run_import(src, "--out", tmp_path / "strict", "--strict")
    assert code == 2 and "Observation/no-subject" in output
    assert not (tmp_path / "strict").exists()


def test_a_patient_without_msc_administration_needs_an_index_date(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [
        patient(), infusion(), bilirubin("b1"),
        patient("002"), bilirubin("b2", pid="002"),
    ])  # fmt: skip
    assert run_import(src, "--out", tmp_path / "study")[0] == 0
    problems = [p["problem"] for p in report_of(tmp_path / "study")["problems"]]
    assert (
        "export.ndjson: Patient/002: no MSC MedicationAdministration to count days from (give --index-date)"
        in problems
    )
    assert (
        "export.ndjson: Observation/b2, element 'subject': patient '002' is not imported (see Patient/002)"
        in problems
    )
    assert pd.read_csv(tmp_path / "study" / "patients.csv", dtype={"patient_id": str})[
        "patient_id"
    ].tolist() == ["001"]

    assert run_import(src, "--out", tmp_path / "indexed", "--index-date", "2024-01-01")[0] == 0
    patients = pd.read_csv(
        tmp_path / "indexed" / "patients.csv", dtype={"patient_id": str}
    ).set_index("patient_id")
    assert patients.loc["002", "n_infusions"] == 0 and patients.loc["001", "n_infusions"] == 1


def test_structural_problems_stop_the_run_and_write_nothing(tmp_path):
    out = tmp_path / "study"
    no_obs = write_ndjson(tmp_path / "a", [patient(), infusion()])
    code, output = run_import(no_obs, "--out", out)
    assert code == 2 and "no Observation resource in the source (required)" in output

    no_admin = write_ndjson(tmp_path / "b", [patient(), bilirubin("b1")])
    code, output = run_import(no_admin, "--out", out)
    assert code == 2 and "give --index-date" in output

    broken = write_ndjson(tmp_path / "c", [patient(), infusion(), bilirubin("b1")])
    with (broken / "export.ndjson").open("a") as f:
        f.write('{"resourceType": "Observation", \n')
    code, output = run_import(broken, "--out", out)
    assert code == 2 and "export.ndjson, row 4: not valid JSON" in output

    twice = write_ndjson(
        tmp_path / "d", [patient(), patient(gender="male"), infusion(), bilirubin("b1")]
    )
    code, output = run_import(twice, "--out", out)
    assert code == 2 and "Patient/001 is given twice with different content" in output

    code, output = run_import(tmp_path / "missing", "--out", out)
    assert code == 2 and "FHIR source not found" in output
    code, output = run_import(no_obs, "--out", out, "--index-date", "2024-02-30")
    assert code == 2 and "--index-date: expected a date YYYY-MM-DD, got '2024-02-30'" in output
    assert not out.exists()
