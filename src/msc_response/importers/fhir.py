"""FHIR R4 resources (Bundles or bulk-export NDJSON) into a study.

* **Files.** SRC is one file or a folder of ``.json`` files (a Bundle, or one resource)
  and ``.ndjson`` files (one resource per line, as a bulk export writes them). A file that
  is not JSON is a structural problem. Each resource the import uses is validated with
  the ``fhir.resources`` R4B models (R4B differs from R4 in none of the elements used
  here); a resource that fails is a row problem naming the resource and element.
* **Patients** (Patient): ``patient_id`` is Patient.id exactly as written, or, with
  ``patient_id: {identifier_system: S}`` in the mapping file, the value of the
  identifier of system S. Sex from gender (male/female), age in whole years at the
  index date from birthDate; the arm from ResearchSubject (actualArm, else assignedArm);
  the etiology from Condition when the mapping file says which code system holds it.
* **Regimen** (MedicationAdministration, status completed): administrations of an MSC
  product (the medication's text, display or code, by the same rule as SDTM's EXTRT,
  plus the mapping file's ``msc_treatments``); dosage.dose in cells.
* **Labs** (Observation, status final/amended/corrected/preliminary): the coding whose
  code the mapping knows (LOINC by default), ``valueQuantity`` (UCUM code, else unit) or
  ``valueInteger``; other numeric Observations are kept under their own code.
* **Days** from each patient's day 0 (:mod:`.index`): ``--index-dates``,
  ``--index-event``, ``--index-date``, else the first MSC administration (its date as
  written, local time). A patient deceased before day 0 is not imported (counted).
* **Not labs**: Observations of a category other than ``laboratory`` (vital signs,
  surveys, exams) are left out and counted, unless the mapping names their code.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, Problem
from .index import (
    NO_INDEX_HINT,
    IndexRules,
    assign_day_zero,
    event_dates,
)
from .mapping import UCUM, Mapping, cells_per_dose_unit, fhir_code_key
from .rows import (
    DECEASED_BEFORE_DAY_0,
    OK,
    PATIENT_COLUMNS,
    ROW_COLUMNS,
    Imported,
    RowLog,
    exclude_patients,
    fhir_problem,
    file_sha256,
    finish_measurements,
    summarise_regimen,
)

#: Why a patient with no day 0 (no index rule covers them) is not imported.
NO_DAY_0 = "no day 0"
#: Observation categories that are laboratory results (uncategorised ones count as labs).
LAB_CATEGORIES = frozenset({None, "laboratory"})


def _category(o) -> str | None:
    """The Observation's category code (``laboratory``, ``vital-signs``, ...); None when it has none."""
    codes = [c.code for cat in o.category or [] for c in cat.coding or [] if c.code]
    return "laboratory" if "laboratory" in codes else (codes[0] if codes else None)


USED = (
    "Patient",
    "Observation",
    "MedicationAdministration",
    "Medication",
    "ResearchSubject",
    "Condition",
)
USABLE_OBSERVATION = frozenset({"final", "amended", "corrected", "preliminary"})


def read_resources(
    src: Path, not_understood: Counter | None = None
) -> list[tuple[str, dict, str | None]]:
    """Every resource in ``src``: (file name, resource as JSON, Bundle fullUrl or None).

    Bundle entries without a resource object are counted in ``not_understood`` by
    ``(file, reason)``.

    Raises
    ------
    DataError
        Nothing to read, or a file that is not JSON / NDJSON of resources, or a Bundle
        whose ``entry`` is not a list (structural).
    """
    not_understood = Counter() if not_understood is None else not_understood
    if not src.exists():
        raise DataError([Problem(src.name, None, None, f"FHIR source not found: {str(src)!r}")])
    files = [src / name for name in _files(src)] if src.is_dir() else [src]
    if not files:
        raise DataError(
            [Problem(src.name, None, None, "no .json or .ndjson file of FHIR resources")]
        )
    out = []
    for path in files:
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(
                [Problem(path.name, None, None, f"cannot read the file: {err}")]
            ) from None
        if path.suffix.lower() == ".ndjson":
            for line_no, line in enumerate(content.splitlines(), start=1):
                if line.strip():
                    out.append((path.name, _json(line, path.name, line_no), None))
        else:
            res = _json(content, path.name, None)
            if res.get("resourceType") == "Bundle":
                entries = res.get("entry", [])
                if not isinstance(entries, list):
                    raise DataError([Problem(path.name, None, "entry", f"a Bundle whose 'entry' is not a list "
                                             f"(got {type(entries).__name__} {str(entries)[:60]!r})")])  # fmt: skip
                for entry in entries:
                    if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                        out.append((path.name, entry["resource"], entry.get("fullUrl")))
                    else:
                        not_understood[(path.name, "Bundle entry without a resource object")] += 1
            else:
                out.append((path.name, res, None))
    for file, res, _ in out:
        if not isinstance(res.get("resourceType"), str):
            raise DataError(
                [
                    Problem(
                        file,
                        None,
                        None,
                        "a JSON object without resourceType is not a FHIR resource",
                    )
                ]
            )
    return out


def _files(src: Path) -> list[str]:
    """The names of the files read from ``src`` (a folder of .json/.ndjson, or one file)."""
    if src.is_file():
        return [src.name]
    return sorted(
        p.name for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".json", ".ndjson")
    )


def _json(text: str, file: str, line: int | None) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError([Problem(file, line, None, f"not valid JSON: {err}")]) from None
    if not isinstance(obj, dict):
        raise DataError(
            [Problem(file, line, None, "not a FHIR resource (a JSON object was expected)")]
        )
    return obj


def _date(value) -> dt.date | None | str:
    """A FHIR date/dateTime as the date written (local time); a partial date stays text."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return value  # None, or a partial date such as "2024-03"


def _names(concept) -> list[str]:
    """The text, displays and ``system|code`` keys of a CodeableConcept."""
    if concept is None:
        return []
    names = [concept.text] if concept.text else []
    for c in concept.coding or []:
        names += [n for n in (c.display, c.code and fhir_code_key(c.system, c.code)) if n]
    return names


class _Fhir:
    def __init__(self, src: Path, mapping: Mapping, rules: IndexRules):
        self.src, self.mapping, self.rules = src, mapping, rules
        self.log = RowLog()
        self.report: dict = {"format": "fhir"}
        self.refs: dict[str, str] = {}  # reference (Patient/x, fullUrl) -> patient_id
        self.not_understood: Counter = Counter()  # (file, reason) -> resources or entries
        self.files: list[str] = []  # every file read
        self.not_imported: dict[str, str] = {}  # patient_id -> why

    def add(self, reason: str, file: str, ref: str, element: str | None, message: str) -> None:
        self.log.add(reason, fhir_problem(file, ref, element, message))

    def parse(self, resources) -> dict[str, list]:
        """Validated resources of the types used, by type: (file, model, fullUrl)."""
        from fhir.resources.R4B import get_fhir_model_class
        from pydantic import ValidationError

        by_type: dict[str, list] = {t: [] for t in USED}
        counts: Counter = Counter()
        read: Counter = Counter()  # valid resources per file (or of types not used)
        for file, res, full_url in resources:
            rtype = res["resourceType"]
            counts[rtype] += 1
            if rtype not in by_type:
                self.not_understood[(file, f"resource type {rtype} not used")] += 1
                read[file] += 1  # understood: a type the import does not need
                continue
            try:
                model = get_fhir_model_class(rtype).model_validate(res)
            except ValidationError as err:
                first = err.errors()[0]
                element = ".".join(str(x) for x in first["loc"]) or None
                self.add("invalid resource", file, f"{rtype}/{res.get('id')}", element,
                         f"not a valid FHIR {rtype}: {first['msg']}")  # fmt: skip
                self.not_understood[(file, f"invalid {rtype}")] += 1
                continue
            by_type[rtype].append((file, model, full_url))
            read[file] += 1
        for file in self.files:
            if not read[file]:
                self.log.add("file with nothing usable", Problem(file, None, None,
                             "no valid FHIR resource in the file (see not_understood)"))  # fmt: skip
        self.report["not_understood"] = {
            file: {why: int(n) for (f, why), n in sorted(self.not_understood.items()) if f == file}
            for file in sorted({f for f, _ in self.not_understood})
        }
        self.report["files"] = {
            name: {"sha256": file_sha256(self.src / name if self.src.is_dir() else self.src)}
            for name in sorted({f for f, _, _ in resources})
        }
        self.report["resources"] = {t: int(n) for t, n in sorted(counts.items())}
        self.report["resource_types_not_used"] = sorted(set(counts) - set(USED))
        for rtype in ("Patient", "Observation"):
            if counts[rtype] == 0:
                raise DataError(
                    [
                        Problem(
                            self.src.name,
                            None,
                            None,
                            f"no {rtype} resource in the source (required)",
                        )
                    ]
                )
        return by_type

    def patient_of(self, reference, file: str, ref: str, element: str) -> str | None:
        """The patient_id a Reference points to; a problem (and None) when it points nowhere."""
        if reference is None or (reference.reference is None and reference.identifier is None):
            self.add("no subject", file, ref, element, "no subject: the resource names no patient")
            return None
        target = reference.reference
        if target is None:  # a logical reference by identifier
            ident = reference.identifier
            if self.mapping.identifier_system and ident.system == self.mapping.identifier_system:
                target = f"identifier|{ident.value}"
        key = target if target in self.refs else "/".join(str(target).rstrip("/").split("/")[-2:])
        pid = self.refs.get(key)
        if pid is None:
            self.add("patient not found", file, ref, element,
                     f"subject {target!r} is not among the Patient resources")  # fmt: skip
        elif pid in self.not_imported:
            self.log.add_row_of_patient_not_imported(file, self.not_imported[pid])
            return None
        return pid

    # -- Patient -----------------------------------------------------------------------
    def patients(self, items) -> pd.DataFrame:
        seen: dict[str, tuple[str, dict]] = {}
        rows, position = [], Counter()
        system = self.mapping.identifier_system
        for file, p, full_url in items:
            ref = f"Patient/{p.id}"
            position[file] += 1
            if p.id in seen:  # the same patient in two files: fine if identical
                if seen[p.id][1] != p.model_dump(mode="json"):
                    raise DataError([Problem(file, None, None,
                                             f"Patient resource {position[file]} of this file repeats the id of one "
                                             f"in {seen[p.id][0]} with different content (ids are not shown)")])  # fmt: skip
                continue
            seen[p.id] = (file, p.model_dump(mode="json"))
            if system is None:
                pid, element = p.id, "id"
            else:
                values = [
                    i.value
                    for i in p.identifier or []
                    if i.system == system and i.value is not None
                ]
                pid, element = (values[0] if values else None), "identifier"
            if pid is None:
                self.add("patient id missing", file, ref, element,
                         "no patient id" + (f" (no identifier of system {system!r})" if system else ""))  # fmt: skip
                continue
            if pid != pid.strip():
                self.add("patient id with surrounding whitespace", file, ref, element,
                         "the patient id has surrounding whitespace (ids are kept as written; fix the source)")  # fmt: skip
                self.not_imported[pid] = f"see {ref}"
            # what a subject reference may say: Patient/<id>, the Bundle fullUrl, or the identifier
            for key in (ref, full_url, f"identifier|{pid}" if system else None):
                if key:
                    self.refs[key] = pid
            sex = {"male": "M", "female": "F"}.get(p.gender)
            if sex is None and pid not in self.not_imported:
                self.add("sex not F or M", file, ref, "gender",
                         f"gender {p.gender!r} is neither 'male' nor 'female' (the scores need one of them)")  # fmt: skip
                self.not_imported[pid] = f"see {ref}"
            birth = _date(p.birthDate)
            if not isinstance(birth, dt.date) and pid not in self.not_imported:
                self.add("age missing", file, ref, "birthDate",
                         f"birthDate {birth!r} is not a full date: the age cannot be known")  # fmt: skip
                self.not_imported[pid] = f"see {ref}"
            death = _date(p.deceasedDateTime)
            rows.append({"patient_id": pid, "sex": sex, "birth": birth, "file": file, "ref": ref,
                         "death": death if isinstance(death, dt.date) else None})  # fmt: skip
        ids = [r["patient_id"] for r in rows]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:  # two Patient resources with one identifier value: which is whose lab?
            raise DataError([Problem(self.src.name, None, None, f"patient id {i!r} belongs to two Patient resources")
                             for i in twice])  # fmt: skip
        self.report["patients"] = {
            "patient_id": f"Patient.identifier of system {system!r}, exactly as written" if system
            else "Patient.id, exactly as written", "in_source": len(rows)}  # fmt: skip
        return pd.DataFrame(rows, columns=["patient_id", "sex", "birth", "file", "ref", "death"])

    # -- MedicationAdministration --------------------------------------------------------
    def infusions(self, items, medications) -> pd.DataFrame:
        meds = {}
        for _, m, full_url in medications:
            for key in (f"Medication/{m.id}", full_url):
                if key:
                    meds[key] = _names(m.code)
        rows, names, status_skipped = [], Counter(), Counter()
        for file, a, _ in items:
            ref = f"MedicationAdministration/{a.id}"
            med = _names(a.medicationCodeableConcept)
            if a.medicationReference is not None:  # a Medication resource, or one contained here
                target = a.medicationReference.reference or ""
                med += meds.get(target, [])
                med += [
                    n
                    for c in a.contained or []
                    if f"#{c.id}" == target
                    for n in _names(getattr(c, "code", None))
                ]
            msc = self.mapping.is_msc(*med)
            names[(med[0] if med else "(no medication name)", msc)] += 1
            if not msc:
                continue
            if a.status != "completed":
                status_skipped[a.status] += 1
                continue
            pid = self.patient_of(a.subject, file, ref, "subject")
            if pid is None:
                continue
            when = _date(
                a.effectiveDateTime or (a.effectivePeriod.start if a.effectivePeriod else None)
            )
            dose = a.dosage.dose if a.dosage else None
            per_unit = None
            if dose is not None:
                per_unit = cells_per_dose_unit(
                    dose.code if dose.system == UCUM and dose.code else dose.unit
                )
            bad = True
            if not isinstance(when, dt.date):
                self.add("infusion day unknown", file, ref, "effectiveDateTime",
                         f"the administration has no full date ({when!r})")  # fmt: skip
            elif dose is None or dose.value is None:
                self.add("dose missing", file, ref, "dosage.dose", "no dose given")
            elif per_unit is None:
                self.add("unknown dose unit", file, ref, "dosage.dose",
                         f"dose unit {(dose.code or dose.unit)!r} is not a number of cells (e.g. '10*8{{cells}}', "
                         "'10^8 cells'; doses per kg need body weight and are not imported)")  # fmt: skip
            else:
                bad = False
            rows.append({"patient_id": pid, "date": when if not bad else None,
                         "cells": float(dose.value) * per_unit if not bad else np.nan, "bad": bad,
                         "file": file, "ref": ref})  # fmt: skip
        for status, n in status_skipped.items():
            self.log.skipped[
                f"MSC MedicationAdministration with status {status!r} (not given)"
            ] += n
        self.report["treatments"] = [{"medication": name, "administrations": int(n), "msc_infusion": msc}
                                     for (name, msc), n in names.most_common()]  # fmt: skip
        inf = pd.DataFrame(rows, columns=["patient_id", "date", "cells", "bad", "file", "ref"])
        inf["position"] = [d.toordinal() if isinstance(d, dt.date) else np.nan for d in inf["date"]]
        return inf

    # -- Observation -------------------------------------------------------------------
    def measurements(self, items, index: dict[str, dt.date]) -> pd.DataFrame:
        m = self.mapping
        cells = {}
        for pop, s in m.cells.items():
            system, _, code = s.code.rpartition("|")
            cells[fhir_code_key(system or None, code)] = (pop, s.parent)
        rows, status_skipped, not_numeric = [], Counter(), Counter()
        for file, o, _ in items:
            ref = f"Observation/{o.id}"
            if o.status not in USABLE_OBSERVATION:
                status_skipped[f"Observation with status {o.status!r} (no usable result)"] += 1
                continue
            keys = [fhir_code_key(c.system, c.code) for c in o.code.coding or [] if c.code]
            displays = {
                fhir_code_key(c.system, c.code): c.display for c in o.code.coding or [] if c.code
            }
            known = [k for k in keys if k in cells or k in m.tests]
            key = known[0] if known else (keys[0] if keys else None)
            category = _category(o)
            if not known and category not in LAB_CATEGORIES:  # vital signs, surveys: not labs
                status_skipped[f"Observation of category {category!r}, not mapped (not a lab)"] += 1
                continue
            kind, name, parent = "lab", None, None
            if key in cells:
                kind, (name, parent) = "cells", cells[key]
            elif key in m.tests:
                name = m.tests[key]
            value, unit, value_el, unit_el = (
                np.nan,
                None,
                "valueQuantity.value",
                "valueQuantity.code",
            )
            q = o.valueQuantity
            if q is not None and q.value is not None:
                value = float(q.value)
                unit, unit_el = (
                    (q.code, "valueQuantity.code")
                    if q.system == UCUM and q.code
                    else (q.unit, "valueQuantity.unit")
                )
            elif o.valueInteger is not None:
                value, unit, value_el = float(o.valueInteger), "", "valueInteger"
            if name is None and kind == "lab":  # not mapped: kept under its own code if numeric
                if key is None or np.isnan(value):
                    not_numeric[key or "(no code)"] += 1
                    continue
                name = key
            status = OK
            if o.dataAbsentReason is not None and np.isnan(value):
                status_skipped["Observation with a dataAbsentReason instead of a value"] += 1
                continue
            pid = self.patient_of(o.subject, file, ref, "subject")
            when = _date(o.effectiveDateTime or (o.effectivePeriod.start if o.effectivePeriod else None)
                         or o.effectiveInstant)  # fmt: skip
            day = np.nan
            if pid is None:
                status = "no patient"
            elif np.isnan(value):
                status = "no value"
                self.add(
                    "no value",
                    file,
                    ref,
                    "value[x]",
                    "no value: neither valueQuantity.value nor valueInteger",
                )
            elif q is not None and q.comparator is not None:
                status = "value with a comparator"
                self.add(status, file, ref, "valueQuantity.comparator",
                         f"value {q.comparator}{value:g} is a bound, not a measurement")  # fmt: skip
            elif not isinstance(when, dt.date):
                status = "day unknown"
                self.add(
                    status, file, ref, "effectiveDateTime", f"no full effective date ({when!r})"
                )
            elif pid not in index:
                status = NO_DAY_0  # the patient is not imported (one problem, on the Patient)
            else:
                day = float((when - index[pid]).days)
            rows.append({"patient_id": pid, "day": day, "kind": kind, "name": name, "parent": parent,
                         "value": value, "unit": unit, "code": key, "file": file, "row": np.nan, "ref": ref,
                         "value_col": value_el, "unit_col": unit_el, "status": status,
                         "display": displays.get(key) or o.code.text})  # fmt: skip
        for status, n in status_skipped.items():
            self.log.skipped[status] += n
        for code, n in not_numeric.items():
            self.log.skipped[f"Observation {code}: not mapped and no numeric value"] += n
        return pd.DataFrame(rows, columns=ROW_COLUMNS)

    def etiology(self, conditions) -> dict[str, str]:
        e = self.mapping.etiology
        if e is None:
            return {}
        found: dict[str, list] = {}
        for file, c, _ in conditions:
            hits = [
                co.code
                for co in (c.code.coding if c.code else []) or []
                if co.system == e.system and co.code
            ]
            if not hits:
                continue
            pid = self.patient_of(c.subject, file, f"Condition/{c.id}", "subject")
            if pid is not None:
                found.setdefault(pid, []).append(
                    (e.codes.get(hits[0], hits[0]), file, f"Condition/{c.id}")
                )
        out = {}
        for pid, values in found.items():
            distinct = list(dict.fromkeys(v for v, _, _ in values))
            if len(distinct) > 1:
                self.add("conflicting etiology", values[1][1], values[1][2], "code",
                         f"the patient has {len(distinct)} etiologies {distinct}; etiology left empty")  # fmt: skip
            else:
                out[pid] = distinct[0]
        return out

    def arms(self, subjects) -> dict[str, str]:
        out = {}
        for file, s, _ in subjects:
            pid = self.patient_of(s.individual, file, f"ResearchSubject/{s.id}", "individual")
            arm = s.actualArm or s.assignedArm
            if pid is not None and arm:
                out[pid] = arm
        return out

    def subject_of(self, file: str, res: dict) -> str | None:
        """The patient of a resource not otherwise validated (an index event), or None."""
        from fhir.resources.R4B.reference import Reference
        from pydantic import ValidationError

        ref = f"{res.get('resourceType')}/{res.get('id')}"
        try:
            subject = Reference.model_validate(res.get("subject") or res.get("patient") or {})
        except ValidationError as err:
            self.add(
                "invalid resource",
                file,
                ref,
                "subject",
                f"not a valid Reference: {err.errors()[0]['msg']}",
            )
            return None
        return self.patient_of(subject, file, ref, "subject")

    def day_zero(self, pats: pd.DataFrame, inf: pd.DataFrame, resources) -> dict[str, dt.date]:
        """Day 0 of every patient with one; the others are not imported (one problem each)."""
        good = inf[~inf["bad"].astype(bool)]
        msc_first = {pid: dt.date.fromordinal(int(p))
                     for pid, p in good.groupby("patient_id")["position"].min().items()}  # fmt: skip
        events, event_counts = {}, None
        if self.rules.event is not None:
            events, event_counts = event_dates(resources, self.rules.event, self.subject_of)
        candidates = [p for p in pats["patient_id"] if p not in self.not_imported]
        zero = assign_day_zero(candidates, self.rules, msc_first, events)
        if not self.rules.given and zero["index_date"].isna().all():
            raise DataError([Problem(self.src.name, None, None,
                                     "no MSC MedicationAdministration to count days from (day 0); " + NO_INDEX_HINT)])  # fmt: skip
        where = pats.set_index("patient_id")
        for pid in zero.loc[zero["index_date"].isna(), "patient_id"]:
            why = (f"none of the rules given covers this patient ({', '.join(self.rules.in_force)})"
                   if self.rules.given else "no MSC MedicationAdministration for this patient; " + NO_INDEX_HINT)  # fmt: skip
            self.add(
                NO_DAY_0, where.at[pid, "file"], where.at[pid, "ref"], None, f"no day 0: {why}"
            )
            self.not_imported[pid] = NO_DAY_0
        has = zero.dropna(subset=["index_date"])
        self.report["days"] = {
            "rule": "days from each patient's day 0; the first of these rules that covers a patient sets it: "
                    + ", ".join(self.rules.in_force),
            "patients_by_rule": {r: int((has["rule"] == r).sum()) for r in self.rules.in_force},
            "patients_without_day_0 (not imported)": int(zero["index_date"].isna().sum()),
            **({"index_date": self.rules.date.isoformat()} if self.rules.date else {}),
            **({"index_dates_file": self.rules.dates_file,
                "index_dates_file_patients_not_in_source": len(set(self.rules.dates) - set(pats["patient_id"]))}
               if self.rules.dates_file else {}),
            **({"index_event": "|".join(x for x in self.rules.event if x), **event_counts} if event_counts else {}),
            # per patient: only in this file, never on the console
            "per_patient": [{"patient_id": r.patient_id, "day_0": r.index_date.isoformat(), "rule": r.rule}
                            for r in has.itertuples(index=False)],
        }  # fmt: skip
        return dict(zip(has["patient_id"], has["index_date"], strict=True))

    def run(self) -> Imported:
        resources = read_resources(self.src, self.not_understood)
        self.files = _files(self.src)
        by_type = self.parse(resources)
        pats = self.patients(by_type["Patient"])
        inf = self.infusions(by_type["MedicationAdministration"], by_type["Medication"])
        index = self.day_zero(pats, inf, resources)
        summary, unequal = summarise_regimen(
            inf[inf["patient_id"].isin(index)],
            self.log,
            lambda i, message: fhir_problem(
                inf.loc[i, "file"], inf.loc[i, "ref"], "dosage.dose", message
            ),
        )
        rows = self.measurements(by_type["Observation"], index)
        etiology = self.etiology(by_type["Condition"])
        arms = self.arms(by_type["ResearchSubject"])
        keep = ~pats["patient_id"].isin(list(self.not_imported))
        pats = pats[keep].reset_index(drop=True)
        death = pats["death"].map(lambda d: d if isinstance(d, dt.date) else None)
        dead = np.array([d is not None and d < index[p] for d, p in zip(death, pats["patient_id"], strict=True)],
                        dtype=bool)  # fmt: skip
        pats = exclude_patients(pats, rows, dead, DECEASED_BEFORE_DAY_0, self.log)
        labs, cells, rows = finish_measurements(rows, self.mapping, self.log)
        out = pd.DataFrame({"patient_id": pats["patient_id"], "sex": pats["sex"]})
        out["age_years"] = [
            float(_whole_years(b, index[p]))
            for b, p in zip(pats["birth"], pats["patient_id"], strict=True)
        ]
        if etiology:
            out["etiology"] = out["patient_id"].map(etiology)
        if arms:
            out["arm"] = out["patient_id"].map(arms)
        reg = summary.set_index("patient_id").reindex(out["patient_id"])
        out["dose_per_infusion"] = reg["dose_per_infusion"].to_numpy()
        out["n_infusions"] = np.where(
            out["patient_id"].isin(inf["patient_id"]), reg["n_infusions"].to_numpy(), 0.0
        )
        out["interval_days"] = reg["interval_days"].to_numpy()
        out = out[[c for c in PATIENT_COLUMNS if c in out]]
        self.report["patients"]["not_imported"] = int((~keep).sum())
        self.report["patients"]["deceased_before_day_0 (deceasedDateTime, not imported)"] = int(
            dead.sum()
        )
        self.report["regimen"] = {
            "msc_infusions": "completed MedicationAdministrations of an MSC product (default rule: the "
                             "medication's text or display says 'mesenchymal' or 'MSC'; plus the mapping file's msc_treatments)",
            "patients_with_msc_infusions": int(out["patient_id"].isin(inf["patient_id"]).sum()),
            "patients_with_unequal_intervals (mean used)": int(unequal),
        }  # fmt: skip
        return Imported(out, labs, cells, rows, self.log, self.report)


def _whole_years(birth: dt.date, on: dt.date) -> int:
    """Completed years of age on a date."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def import_fhir(src: str | Path, mapping: Mapping, rules: IndexRules | None = None) -> Imported:
    """Read FHIR resources in ``src`` into the contract's tables (nothing is written).

    ``rules`` say how day 0 is set per patient (:mod:`.index`; default: the first MSC
    administration only).
    """
    return _Fhir(Path(src), mapping, rules or IndexRules()).run()
