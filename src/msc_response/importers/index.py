"""Day 0 of each patient of an EHR export (FHIR), where no MSC infusion marks it.

A trial's day 0 is the first MSC infusion. Most hospital exports hold no MSC
administration at all, so the user says what day 0 is, per patient, with one or more
of (the first that covers a patient wins, in this order):

1. ``--index-dates FILE.csv`` - a table ``patient_id,index_date`` (ids as written);
2. ``--index-event SYSTEM|CODE`` - the first MedicationAdministration,
   MedicationRequest, Procedure or Encounter carrying that code;
3. ``--index-date DATE`` - one date for every patient;
4. the first MSC MedicationAdministration (the default, and the only rule of a trial).

A patient none of them covers is not imported ("no day 0"); with no option and no MSC
administration at all, the import stops and names the options.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError, Problem
from .text import read_csv_text

#: The rules, in the order they are tried; the report counts patients by these names.
BY_FILE, BY_EVENT, BY_DATE, BY_MSC = (
    "--index-dates file",
    "--index-event",
    "--index-date",
    "first MSC administration",
)
RULES = (BY_FILE, BY_EVENT, BY_DATE, BY_MSC)

#: Resource types an index event may be, with where each keeps its codes and its date.
EVENT_RESOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MedicationAdministration": (("medicationCodeableConcept",), ("effectiveDateTime", "effectivePeriod.start")),
    "MedicationRequest": (("medicationCodeableConcept",), ("authoredOn",)),
    "Procedure": (("code",), ("performedDateTime", "performedPeriod.start")),
    "Encounter": (("type", "serviceType", "reasonCode"), ("period.start",)),
}  # fmt: skip
#: Statuses that say the event did not happen.
NOT_HAPPENED = frozenset({"entered-in-error", "cancelled", "not-done", "planned"})

NO_INDEX_HINT = (
    "give --index-date DATE (one day 0 for everyone), --index-dates FILE.csv "
    "(patient_id,index_date) or --index-event SYSTEM|CODE (the first resource carrying that code)"
)


def parse_date(value: str, what: str) -> dt.date:
    """``value`` (``YYYY-MM-DD``) as a date; ConfigError naming ``what`` otherwise."""
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}: expected a date YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class IndexRules:
    """The day-0 options given (none: the first MSC administration only)."""

    date: dt.date | None = None
    dates: dict[str, dt.date] = field(default_factory=dict)
    dates_file: str | None = None
    event: tuple[str | None, str] | None = None  # (system or None for any, code)

    @property
    def given(self) -> bool:
        return self.date is not None or self.dates_file is not None or self.event is not None

    @property
    def in_force(self) -> tuple[str, ...]:
        """The rules tried, in order: the options given, then the first MSC administration."""
        given = {BY_FILE: self.dates_file is not None, BY_EVENT: self.event is not None,
                 BY_DATE: self.date is not None, BY_MSC: True}  # fmt: skip
        return tuple(r for r in RULES if given[r])


def index_rules(
    index_date=None, index_dates=None, index_event=None, *, encoding=None
) -> IndexRules:
    """The options as rules; a bad option or index-dates file stops the run before any work."""
    date = None if index_date is None else parse_date(index_date, "index_date")
    event = None
    if index_event is not None:
        system, sep, code = str(index_event).strip().rpartition("|")
        if not code:
            raise ConfigError(
                f"index_event: expected SYSTEM|CODE (or a bare CODE), got {index_event!r}"
            )
        event = (system if sep else None, code)
    dates: dict[str, dt.date] = {}
    name = None
    if index_dates is not None:
        path = Path(index_dates)
        name = path.name
        dates = read_index_dates(path, encoding)
    return IndexRules(date=date, dates=dates, dates_file=name, event=event)


def read_index_dates(path: Path, encoding: str | None) -> dict[str, dt.date]:
    """The ``patient_id,index_date`` table: ids as written; any bad row is structural (it is the user's)."""
    try:
        df, _ = read_csv_text(path, encoding)
    except (OSError, ValueError, LookupError) as err:  # missing, unreadable, empty, undecodable
        raise DataError([Problem(path.name, None, None, f"cannot read the file: {err}")]) from None
    missing = [c for c in ("patient_id", "index_date") if c not in df.columns]
    if missing:
        raise DataError(
            [Problem(path.name, None, c, "required column is missing") for c in missing]
        )
    problems = []
    out: dict[str, dt.date] = {}
    for i, (pid, when) in enumerate(zip(df["patient_id"], df["index_date"], strict=True), start=1):
        if pid == "":
            problems.append(Problem(path.name, i, "patient_id", "patient_id is missing"))
        elif pid in out:
            problems.append(Problem(path.name, i, "patient_id", "patient_id given twice"))
            continue
        try:
            out[pid] = dt.date.fromisoformat(when.strip())
        except ValueError:
            problems.append(
                Problem(path.name, i, "index_date", f"{when!r} is not a date YYYY-MM-DD")
            )
    if problems:
        raise DataError(problems)
    return out


def _codings(res: dict, elements) -> list[tuple[str | None, str]]:
    out = []
    for el in elements:
        concepts = res.get(el)
        for concept in concepts if isinstance(concepts, list) else [concepts]:
            if isinstance(concept, dict):
                for c in concept.get("coding") or []:
                    if isinstance(c, dict) and c.get("code") is not None:
                        out.append((c.get("system"), str(c["code"])))
    return out


def _first_date(res: dict, paths) -> dt.date | None:
    for path in paths:
        v = res
        for part in path.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if isinstance(v, str) and len(v) >= 10:
            try:
                return dt.date.fromisoformat(v[:10])  # the date as written (local time)
            except ValueError:
                return None
    return None


def event_dates(
    resources, event: tuple[str | None, str], subject_of
) -> tuple[dict[str, dt.date], dict]:
    """The first date of ``event`` per patient, and counts for the report.

    ``resources`` are ``(file, resource JSON, fullUrl)``; ``subject_of(file, resource)``
    gives the patient_id of a resource (None when it names no imported patient).
    """
    system, code = event
    meds = {}
    for _, res, full_url in resources:
        if res.get("resourceType") == "Medication":
            for key in (f"Medication/{res.get('id')}", full_url):
                if key:
                    meds[key] = res
    first: dict[str, dt.date] = {}
    found, undated = {t: 0 for t in EVENT_RESOURCES}, 0
    for file, res, _ in resources:
        rtype = res.get("resourceType")
        if rtype not in EVENT_RESOURCES or res.get("status") in NOT_HAPPENED:
            continue
        elements, date_paths = EVENT_RESOURCES[rtype]
        codings = _codings(res, elements)
        ref = (res.get("medicationReference") or {}).get("reference")
        if ref in meds:
            codings += _codings(meds[ref], ("code",))
        if not any(c == code and (system is None or s == system) for s, c in codings):
            continue
        found[rtype] += 1
        when = _first_date(res, date_paths)
        pid = subject_of(file, res)
        if when is None:
            undated += 1
        elif pid is not None and (pid not in first or when < first[pid]):
            first[pid] = when
    return first, {"resources_carrying_the_code": found, "without_a_full_date": undated}


def assign_day_zero(patients, rules: IndexRules, msc_first: dict[str, dt.date],
             events: dict[str, dt.date]) -> pd.DataFrame:  # fmt: skip
    """Per patient: ``index_date`` (None: no day 0) and the ``rule`` that set it."""
    out = []
    for pid in patients:
        for rule, table in ((BY_FILE, rules.dates), (BY_EVENT, events),
                            (BY_DATE, {pid: rules.date} if rules.date else {}), (BY_MSC, msc_first)):  # fmt: skip
            if pid in table:
                out.append((pid, table[pid], rule))
                break
        else:
            out.append((pid, None, None))
    return pd.DataFrame(out, columns=["patient_id", "index_date", "rule"])
