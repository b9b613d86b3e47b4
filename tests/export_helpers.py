"""Test helpers: a SIMULATED study exported the way sites deliver data (SDTM .xpt, FHIR R4).

The exports use the codes of the example mapping files (``examples/import_mapping_*.yaml``),
so a round trip also checks that the examples work. They exercise what real deliveries
do: SI and conventional units, INR with a blank unit, results only in LBORRES, study days
missing (dates only), a reference start that is not the first infusion, text grades,
a second MSC treatment name, a non-MSC study treatment.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from conftest import TRIAL_PATIENTS
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.features import build_features

REPO = Path(__file__).resolve().parents[1]
SDTM_MAPPING = REPO / "examples" / "import_mapping_sdtm.yaml"
FHIR_MAPPING = REPO / "examples" / "import_mapping_fhir.yaml"

FIRST_INFUSION = dt.date(2024, 1, 8)
LB_CODES = {"bilirubin": "BILI", "albumin": "ALB", "inr": "INR", "creatinine": "CREAT",
            "sodium": "SODIUM", "platelets": "PLAT", "alt": "ALT", "ast": "AST", "pta": "PTA"}  # fmt: skip
ASCITES_TEXT = {0: "NONE", 1: "MILD", 2: "MODERATE"}
MSC_NAMES = ("UC-MSC", "UMBILICAL CORD STROMAL CELLS")  # the second only through the mapping file


def run_import(*args) -> tuple[int, str]:
    """``msc-response import ARGS`` in this process: the exit code and everything printed."""
    result = CliRunner().invoke(app, ["import", *map(str, args)])
    return result.exit_code, result.output + (
        result.stderr if result.stderr_bytes is not None else ""
    )


def import_report(study: Path) -> dict:
    """The ``import_report.json`` an import wrote into ``study``."""
    return json.loads((study / "import_report.json").read_text())


def assert_same_features(original: Path, imported: Path) -> None:
    """Same ids, days, canonical values: the feature tables (with labels) are equal."""
    cfg = config_from_dict({"name": "roundtrip", "landmark_day": 7})
    a, b = build_features(cfg, original), build_features(cfg, imported)
    assert sorted(a.feature_columns) == sorted(b.feature_columns)
    assert a.table["patient_id"].tolist() == b.table["patient_id"].tolist()
    pd.testing.assert_frame_equal(a.table, b.table[a.table.columns], check_exact=False, rtol=1e-12)
    assert a.flow == b.flow
    assert len(a.table) == TRIAL_PATIENTS and a.flow["responders"] > 0
    # the patients table itself, etiology and regimen included
    before, after = (
        pd.read_csv(d / "patients.csv", dtype={"patient_id": str}) for d in (original, imported)
    )
    pd.testing.assert_frame_equal(before, after[before.columns], check_dtype=False)


def read_study(study: Path) -> dict[str, pd.DataFrame]:
    """The simulated tables, ids as text."""
    return {
        t: pd.read_csv(study / f"{t}.csv", dtype={"patient_id": str})
        for t in ("patients", "labs", "cells")
    }


def _first_infusion(i: int) -> dt.date:
    return FIRST_INFUSION + dt.timedelta(days=3 * i)


def sdtm_study_day(date: dt.date, reference: dt.date) -> int:
    """SDTM --DY: 1 on the reference start date, -1 the day before (no day 0)."""
    elapsed = (date - reference).days
    return elapsed + 1 if elapsed >= 0 else elapsed


def sdtm_tables(study: Path, *, reference: str = "first_infusion") -> dict[str, pd.DataFrame]:
    """DM, LB, EX, FA and MH of a simulated study.

    ``reference``: ``first_infusion`` (RFSTDTC is the first MSC infusion) or ``screening``
    (RFSTDTC is 7 days before it, so LBDY 8 is the infusion day).
    """
    t = read_study(study)
    patients, labs, cells = t["patients"], t["labs"], t["cells"]
    order = {pid: i for i, pid in enumerate(patients["patient_id"])}
    first = {pid: _first_infusion(i) for pid, i in order.items()}
    shift = 0 if reference == "first_infusion" else 7
    ref = {pid: d - dt.timedelta(days=shift) for pid, d in first.items()}

    dm = pd.DataFrame({
        "STUDYID": "MSC-SIM", "DOMAIN": "DM", "USUBJID": patients["patient_id"],
        "RFSTDTC": [ref[p].isoformat() for p in patients["patient_id"]],
        "RFXSTDTC": [first[p].isoformat() for p in patients["patient_id"]],
        "AGE": patients["age_years"].astype(float), "AGEU": "YEARS", "SEX": patients["sex"],
        "ARM": "PLANNED " + patients["arm"], "ACTARM": patients["arm"],
    })  # fmt: skip

    def when(pid, day):
        return first[pid] + dt.timedelta(days=int(day))

    lb_parts, fa_parts = [], []
    for k, r in enumerate(labs.itertuples(index=False)):
        date = when(r.patient_id, r.day)
        dy = (
            float(sdtm_study_day(date, ref[r.patient_id])) if k % 5 else np.nan
        )  # every 5th: date only
        base = {
            "USUBJID": r.patient_id,
            "DY": dy,
            "DTC": date.isoformat() + ("T08:30" if k % 3 == 0 else ""),
        }
        if r.test in LB_CODES:
            unit = {"ratio": "" if k % 7 % 2 else "RATIO"}.get(r.unit, r.unit)
            standard = k % 7 != 0  # every 7th: only the result as collected
            lb_parts.append({**base, "LBTESTCD": LB_CODES[r.test], "LBCAT": "CHEMISTRY", "LBSPEC": "SERUM",
                             "LBORRES": repr(float(r.value)), "LBORRESU": unit,
                             "LBSTRESN": float(r.value) if standard else np.nan,
                             "LBSTRESU": unit if standard else ""})  # fmt: skip
        else:
            code = {"ascites": "ASCITES", "encephalopathy": "HEGRADE", "dialysis": "DIALYSIS"}[
                r.test
            ]
            result = {
                "ascites": ASCITES_TEXT.get(int(r.value)),
                "dialysis": "Y" if r.value else "N",
            }.get(r.test)
            fa_parts.append({**base, "FATESTCD": code, "FAOBJ": r.test.upper(),
                             "FAORRES": result if result else repr(float(r.value)),
                             "FASTRESN": np.nan if result else float(r.value)})  # fmt: skip
    for r in cells.itertuples(index=False):
        date = when(r.patient_id, r.day)
        lb_parts.append({"USUBJID": r.patient_id, "DY": float(sdtm_study_day(date, ref[r.patient_id])),
                         "DTC": date.isoformat(), "LBTESTCD": "MX1MONO", "LBCAT": "FLOW CYTOMETRY",
                         "LBSPEC": "BLOOD", "LBORRES": repr(100 * r.fraction), "LBORRESU": "%",
                         "LBSTRESN": 100 * r.fraction, "LBSTRESU": "%"})  # fmt: skip
    lb = pd.DataFrame(lb_parts).rename(columns={"DY": "LBDY", "DTC": "LBDTC"})
    lb.insert(0, "DOMAIN", "LB")
    lb.insert(2, "LBSEQ", lb.groupby("USUBJID").cumcount() + 1.0)
    fa = pd.DataFrame(fa_parts).rename(columns={"DY": "FADY", "DTC": "FADTC"})
    fa.insert(0, "DOMAIN", "FA")

    ex_parts = []
    for p in patients.itertuples(index=False):
        name = MSC_NAMES[1] if p.arm.startswith("Ib") and order[p.patient_id] % 2 else MSC_NAMES[0]
        for j in range(int(p.n_infusions)):
            date = first[p.patient_id] + dt.timedelta(days=j * int(p.interval_days))
            ex_parts.append({"USUBJID": p.patient_id, "EXTRT": name, "EXDOSE": p.dose_per_infusion / 1e8,
                             "EXDOSU": "10^8 cells", "EXROUTE": "INTRAVENOUS", "EXSTDTC": date.isoformat(),
                             "EXSTDY": float(sdtm_study_day(date, ref[p.patient_id]))})  # fmt: skip
    pid0 = patients["patient_id"].iloc[0]  # a study treatment that is not MSC: not an infusion
    ex_parts.append({"USUBJID": pid0, "EXTRT": "HUMAN SERUM ALBUMIN", "EXDOSE": 20.0, "EXDOSU": "g",
                     "EXROUTE": "INTRAVENOUS", "EXSTDTC": first[pid0].isoformat(),
                     "EXSTDY": float(sdtm_study_day(first[pid0], ref[pid0]))})  # fmt: skip
    ex = pd.DataFrame(ex_parts)
    mh = pd.DataFrame({"USUBJID": patients["patient_id"], "MHCAT": "CIRRHOSIS ETIOLOGY",
                       "MHTERM": patients["etiology"]})  # fmt: skip
    return {"DM": dm, "LB": lb, "EX": ex, "FA": fa, "MH": mh}


def write_domains(
    tables: dict[str, pd.DataFrame], out: Path, *, fmt: str = "xpt", version: int = 5
) -> Path:
    """Write SDTM domains as ``.xpt`` (SAS transport v5 or v8), ``.csv`` or ``.parquet``."""
    import pyreadstat

    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df = df.copy()
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].fillna("").astype(str)
        path = out / f"{name.lower()}.{fmt}"
        if fmt == "xpt":
            pyreadstat.write_xport(df, path, table_name=name, file_format_version=version)
        elif fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
    return out


def export_sdtm(study: Path, out: Path, *, version: int = 5, fmt: str = "xpt",
                reference: str = "first_infusion") -> Path:  # fmt: skip
    """A simulated study as SDTM domain files in ``out``."""
    return write_domains(sdtm_tables(study, reference=reference), out, fmt=fmt, version=version)


# ----------------------------------------------------------------------------------------
# FHIR R4

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL = "http://example.org/fhir/CodeSystem/liver-findings"  # the site's own codes (mapping file)
ETIOLOGY_SYSTEM = "http://example.org/fhir/CodeSystem/cirrhosis-etiology"
LOINC_CODES = {("bilirubin", "mg/dL"): "1975-2", ("bilirubin", "umol/L"): "14631-6",
               ("albumin", "g/dL"): "1751-7", ("albumin", "g/L"): "1751-7", ("inr", "ratio"): "6301-6",
               ("creatinine", "mg/dL"): "2160-0", ("creatinine", "umol/L"): "14682-9",
               ("sodium", "mmol/L"): "2951-2", ("platelets", "10^9/L"): "777-3", ("alt", "U/L"): "1742-6",
               ("ast", "U/L"): "1920-8", ("pta", "%"): "5894-1"}  # fmt: skip
UCUM_CODES = {"ratio": "{INR}", "10^9/L": "10*9/L"}
LOCAL_CODES = {
    "ascites": "ascites-grade",
    "encephalopathy": "west-haven-grade",
    "dialysis": "dialysis-flag",
}


def _uuid(kind: str, key) -> str:
    import uuid

    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{kind}/{key}')}"


def fhir_resources(study: Path, *, by_full_url: bool = False) -> list[tuple[dict, str]]:
    """The resources of a simulated study, each with its fullUrl (``urn:uuid:...``).

    ``by_full_url``: references point to fullUrls (as in a transaction Bundle) instead of
    ``Patient/<id>``.
    """
    t = read_study(study)
    patients, labs, cells = t["patients"], t["labs"], t["cells"]
    order = {pid: i for i, pid in enumerate(patients["patient_id"])}

    def subject(pid):
        return {"reference": _uuid("Patient", pid) if by_full_url else f"Patient/{pid}"}

    def effective(pid, day, k):
        date = _first_infusion(order[pid]) + dt.timedelta(days=int(day))
        return date.isoformat() + ("T08:30:00+08:00" if k % 2 else "")

    out = []
    for p in patients.itertuples(index=False):
        first = _first_infusion(order[p.patient_id])
        out.append(({"resourceType": "Patient", "id": p.patient_id,
                     "gender": {"F": "female", "M": "male"}[p.sex],
                     "birthDate": dt.date(first.year - int(p.age_years), 1, 1).isoformat()},
                    _uuid("Patient", p.patient_id)))  # fmt: skip
        out.append(({"resourceType": "ResearchSubject", "id": f"rs-{p.patient_id}", "status": "on-study",
                     "study": {"reference": "ResearchStudy/msc-sim"}, "individual": subject(p.patient_id),
                     "assignedArm": "planned", "actualArm": p.arm}, _uuid("ResearchSubject", p.patient_id)))  # fmt: skip
        out.append(({"resourceType": "Condition", "id": f"etiology-{p.patient_id}", "subject": subject(p.patient_id),
                     "code": {"coding": [{"system": ETIOLOGY_SYSTEM, "code": p.etiology}]}},
                    _uuid("Condition", p.patient_id)))  # fmt: skip
        for j in range(int(p.n_infusions)):
            date = first + dt.timedelta(days=j * int(p.interval_days))
            out.append(({"resourceType": "MedicationAdministration", "id": f"msc-{p.patient_id}-{j}",
                         "status": "completed", "subject": subject(p.patient_id),
                         "medicationCodeableConcept": {"text": "Umbilical cord mesenchymal stromal cells"},
                         "effectiveDateTime": date.isoformat(),
                         "dosage": {"dose": {"value": p.dose_per_infusion / 1e8, "unit": "10^8 cells",
                                             "system": UCUM, "code": "10*8{cells}"}}},
                        _uuid("MedicationAdministration", f"{p.patient_id}-{j}")))  # fmt: skip
    for k, r in enumerate(labs.itertuples(index=False)):
        res = {"resourceType": "Observation", "id": f"lab-{k}", "status": "final",
               "subject": subject(r.patient_id), "effectiveDateTime": effective(r.patient_id, r.day, k)}  # fmt: skip
        if r.test in LOCAL_CODES:
            res["code"] = {"coding": [{"system": LOCAL, "code": LOCAL_CODES[r.test]}]}
            res["valueInteger"] = int(r.value)
        else:
            res["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                            "code": "laboratory"}]}]  # fmt: skip
            res["code"] = {
                "coding": [{"system": LOINC, "code": LOINC_CODES[(r.test, r.unit)]}],
                "text": r.test,
            }
            res["valueQuantity"] = {"value": float(r.value), "unit": r.unit, "system": UCUM,
                                    "code": UCUM_CODES.get(r.unit, r.unit)}  # fmt: skip
        out.append((res, _uuid("Observation", k)))
    for k, r in enumerate(cells.itertuples(index=False)):
        out.append(({"resourceType": "Observation", "id": f"cells-{k}", "status": "final",
                     "code": {"coding": [{"system": LOCAL, "code": "mx1-monocytes"}]},
                     "subject": subject(r.patient_id), "effectiveDateTime": effective(r.patient_id, r.day, k),
                     "valueQuantity": {"value": 100 * r.fraction, "unit": "%", "system": UCUM, "code": "%"}},
                    _uuid("CellObservation", k)))  # fmt: skip
    pid0 = patients["patient_id"].iloc[0]  # what a real export also holds: not used, counted
    out.append(({"resourceType": "Observation", "id": "bp-1", "status": "final", "subject": subject(pid0),
                 "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "effectiveDateTime": "2024-01-08",
                 "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                                "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}]}, _uuid("Observation", "bp")))  # fmt: skip
    out.append(({"resourceType": "Observation", "id": "lab-error", "status": "entered-in-error",
                 "subject": subject(pid0), "code": {"coding": [{"system": LOINC, "code": "1975-2"}]},
                 "effectiveDateTime": "2024-01-08", "valueQuantity": {"value": 99.0, "unit": "mg/dL"}},
                _uuid("Observation", "error")))  # fmt: skip
    out.append(
        (
            {"resourceType": "Organization", "id": "site-1", "name": "Simulated site"},
            _uuid("Organization", 1),
        )
    )
    return out


def export_fhir(study: Path, out: Path, *, bundle: bool = False) -> Path:
    """A simulated study as bulk-export NDJSON (one file per resource type) or one Bundle."""
    out.mkdir(parents=True, exist_ok=True)
    resources = fhir_resources(study, by_full_url=bundle)
    if bundle:
        doc = {"resourceType": "Bundle", "type": "collection",
               "entry": [{"fullUrl": url, "resource": res} for res, url in resources]}  # fmt: skip
        (out / "bundle.json").write_text(json.dumps(doc, indent=1))
        return out
    by_type: dict[str, list[str]] = {}
    for res, _ in resources:
        by_type.setdefault(res["resourceType"], []).append(json.dumps(res))
    for rtype, lines in by_type.items():
        (out / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    return out
