"""A public Synthea FHIR R4 export through `import` and `build-features`, default options.

The data are a trimmed extract of eight patients' Bundles (``public/synthea_r4``, source and
licence in ``public/README.md``): no MedicationAdministration at all, day 0 from an index event
(the first simvastatin prescription), yearly metabolic panels, no INR. Expected values are read
from the Bundles here with plain ``json``, not through the importer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from msc_response import load_config, load_study
from msc_response.cli import app
from msc_response.features import build_features
from msc_response.reporting.page import Page
from msc_response.reporting.study_sections import StudyContext, add_eligibility

runner = CliRunner()
EXPORT = Path(__file__).parent / "public" / "synthea_r4"
CONFIG = Path(__file__).parents[2] / "examples" / "synthea_albumin_1y.yaml"
SIMVASTATIN = "http://www.nlm.nih.gov/research/umls/rxnorm|316672"
ALBUMIN, CREATININE = "1751-7", "38483-4"


def bundles() -> dict[str, list[dict]]:
    """File name -> the Bundle's resources."""
    return {
        f.name: [e["resource"] for e in json.loads(f.read_text())["entry"]]
        for f in sorted(EXPORT.glob("*.json"))
    }


def day_of(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def first_statin(resources: list[dict]) -> dt.date | None:
    system, code = SIMVASTATIN.split("|")
    dates = [day_of(r["authoredOn"]) for r in resources
             if r["resourceType"] == "MedicationRequest"
             and any((c["system"], c["code"]) == (system, code)
                     for c in r["medicationCodeableConcept"]["coding"])]  # fmt: skip
    return min(dates, default=None)


def values_by_day(resources: list[dict], loinc: str, day_0: dt.date) -> dict[int, set[float]]:
    out: dict[int, set[float]] = {}
    for r in resources:
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == loinc:
            day = (day_of(r["effectiveDateTime"]) - day_0).days
            out.setdefault(day, set()).add(r["valueQuantity"]["value"])
    return out


def patient_id(resources: list[dict]) -> str:
    return next(r["id"] for r in resources if r["resourceType"] == "Patient")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthea") / "study"
    result = runner.invoke(
        app,
        ["import", str(EXPORT), "--from", "fhir", "--out", str(out), "--index-event", SIMVASTATIN],
    )
    return out, result


def test_day_0_is_each_patients_first_prescription_and_every_patient_is_accounted_for(imported):
    out, result = imported
    assert result.exit_code == 0, result.output
    report = json.loads((out / "import_report.json").read_text())
    expected = {patient_id(rs): first_statin(rs) for rs in bundles().values()}
    with_day_0 = {p: d.isoformat() for p, d in expected.items() if d is not None}
    assert len(expected) == 8 and len(with_day_0) == 7
    assert {p["patient_id"]: p["day_0"] for p in report["days"]["per_patient"]} == with_day_0
    assert report["days"]["patients_by_rule"] == {"--index-event": 7, "first MSC administration": 0}
    assert report["patients"]["in_source"] == 8 and report["patients"]["not_imported"] == 1
    no_day_0 = [p for p in report["problems"] if p["reason"] == "no day 0"]
    assert [p["file"] for p in no_day_0] == ["Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json"]
    patients = pd.read_csv(out / "patients.csv", dtype={"patient_id": str})
    assert sorted(patients["patient_id"]) == sorted(with_day_0)
    assert report["absent_tests"]["inr"] == "no imported rows in the source"
    assert report["rows_not_imported"]["left_out_by_rule"]["Observation of category 'vital-signs', not mapped (not a lab)"] > 0  # fmt: skip


def test_synthea_panels_on_the_same_instant_that_disagree_are_not_imported(imported):
    """Synthea draws a basic and a comprehensive panel at one visit, each with its own creatinine."""
    out, _ = imported
    labs = pd.read_csv(out / "labs.csv", dtype={"patient_id": str})
    report = json.loads((out / "import_report.json").read_text())
    conflicts = {(p["problem"].split("for patient ")[1].split("'")[1], int(p["problem"].split(" on day ")[1].split()[0]))
                 for p in report["problems"] if p["reason"] == "conflicting duplicate" and "'creatinine'" in p["problem"]}  # fmt: skip
    expected = set()
    for rs in bundles().values():
        day_0 = first_statin(rs)
        if day_0 is not None:
            expected |= {(patient_id(rs), day) for day, values in
                         values_by_day(rs, CREATININE, day_0).items() if len(values) > 1}  # fmt: skip
    assert conflicts == expected and expected
    creatinine = labs[labs["test"] == "creatinine"]
    assert not set(zip(creatinine["patient_id"], creatinine["day"], strict=True)) & expected


def test_build_features_with_the_example_config_labels_every_included_patient(imported, tmp_path):
    out, _ = imported
    features = tmp_path / "features.csv"
    result = runner.invoke(app, ["build-features", "--config", str(CONFIG), "--data", str(out),
                                 "--out", str(features)])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = {}  # albumin: latest in days -30..0, closest to 365 within 305..425 (ties: later)
    for rs in bundles().values():
        day_0 = first_statin(rs)
        if day_0 is None:
            continue
        albumin = {d: v.pop() for d, v in values_by_day(rs, ALBUMIN, day_0).items()}
        base = [d for d in albumin if -30 <= d <= 0]
        follow = sorted((d for d in albumin if 305 <= d <= 425), key=lambda d: (abs(d - 365), -d))
        if base and follow:
            change = albumin[follow[0]] - albumin[max(base)]
            expected[patient_id(rs)] = int(change >= 0.1)
    table = pd.read_csv(features, dtype={"patient_id": str}).set_index("patient_id")
    assert table["response"].to_dict() == expected and len(expected) == 5
    assert set(table["response"]) == {0, 1}
    excluded = pd.read_csv(tmp_path / "features.excluded.csv", dtype={"patient_id": str})
    assert len(excluded) + len(table) == 7  # every imported patient: included or excluded, once
    assert sorted(excluded["reason"]) == ["no baseline measurement in days -30..0",
                                          "no follow-up measurement in days 305..425"]  # fmt: skip


def test_the_console_never_names_a_patients_bundle(imported):
    """Synthea names each Bundle after its patient; the console counts, the report names."""
    _, result = imported
    assert "row problem: a .json Bundle (named in import_report.md): " in result.output
    for name, resources in bundles().items():
        assert name.split("_")[0] not in result.output
        assert patient_id(resources) not in result.output


def test_the_eligibility_section_says_child_pugh_cannot_be_computed_without_inr(imported):
    """Synthea writes no INR: the page said "Child-Pugh of the included patients: nan to nan"."""
    out, _ = imported
    config = load_config(CONFIG)
    study = load_study(out)
    ctx = StudyContext(config, study, build_features(config, study), labels={}, source={})
    page = Page("eligibility", simulated=False)
    add_eligibility(page, ctx)
    text = page.html()
    assert not re.search(r"\bnan\b", text)
    assert "Baseline Child-Pugh: not computable for any included patient" in text
