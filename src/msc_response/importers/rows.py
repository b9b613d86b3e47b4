"""Measurement rows on their way into the contract, shared by the SDTM and FHIR importers.

Each importer turns its source into one frame of candidate rows (:data:`ROW_COLUMNS`),
one per source measurement, remembering where each came from. A row that breaks a rule
gets a ``status`` (the reason) and a :class:`~msc_response.errors.Problem` naming its
file, row and column (for FHIR: the resource and element); it is not imported but never
lost - the report lists it. :func:`finish_measurements` applies the rules both formats
share (units, one unit per test, duplicates) and returns the ``labs`` and ``cells`` tables.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import units
from ..errors import Problem
from .mapping import FRACTION_UNITS, Mapping


def file_sha256(path) -> str:
    """SHA-256 of a source file, so the report says exactly which files were read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Columns of the candidate-row frame each importer builds.
ROW_COLUMNS = [
    "patient_id",  # str, as written in the source
    "day",  # float: days from the first MSC infusion (NaN: could not be placed)
    "kind",  # "lab" or "cells"
    "name",  # contract test, or the site's own code; the population for cells
    "parent",  # cells only
    "value",  # float as written (NaN: none)
    "unit",  # the unit as written
    "code",  # the source code, for the report (e.g. "LB BILI", "http://loinc.org|1975-2")
    "file",  # source file name
    "row",  # 1-based data row of the file (SDTM), NaN for FHIR
    "ref",  # FHIR resource ("Observation/o1"), None for SDTM
    "value_col",  # the column / element the value came from
    "unit_col",  # the column / element the unit came from
    "status",  # "" (imported) or the reason it was not
    "display",  # the source's text for the code (LBTEST, coding.display), for the report
]

OK = ""
PATIENT_NOT_IMPORTED = "patient not imported"


@dataclass
class RowLog:
    """Row problems with their reasons, and rows left out by a stated rule (not problems)."""

    problems: list[tuple[str, Problem]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    # Rows of a patient the import left out, counted by (file, why the patient was left out):
    # one decision about the patient, not one problem per row (a hospital export has thousands
    # of rows per patient, and listing each made a 13 MB report of one sentence repeated).
    of_patients_not_imported: Counter = field(default_factory=Counter)

    def add(self, reason: str, problem: Problem) -> None:
        self.problems.append((reason, problem))

    def add_row_of_patient_not_imported(self, file: str, why: str) -> None:
        self.of_patients_not_imported[(file, why)] += 1

    def sort(self) -> None:
        """Problems in file and row order (FHIR problems, without rows, in the order found)."""
        self.problems.sort(key=lambda rp: (rp[1].file, rp[1].row or 0))

    def by_reason(self) -> dict[str, int]:
        counts = Counter(reason for reason, _ in self.problems)
        if self.of_patients_not_imported:
            counts[PATIENT_NOT_IMPORTED] += sum(self.of_patients_not_imported.values())
        return dict(sorted(counts.items()))


def fhir_problem(file: str, ref: str, element: str | None, message: str) -> Problem:
    """A problem in a FHIR resource: the resource and element stand where row and column would."""
    where = ref if element is None else f"{ref}, element {element!r}"
    return Problem(file, None, None, f"{where}: {message}")


def row_problem(rows: pd.DataFrame, i: int, column_of: str | None, message: str) -> Problem:
    """The problem of candidate row ``i``; ``column_of`` names the frame column holding its column."""
    r = rows.iloc[i]
    column = None if column_of is None else r[column_of]
    if isinstance(r["ref"], str):
        return fhir_problem(r["file"], r["ref"], column, message)
    row = None if pd.isna(r["row"]) else int(r["row"])
    return Problem(r["file"], row, column, message)


def reject(rows: pd.DataFrame, mask, reason: str, log: RowLog, column_of, message) -> None:
    """Mark the still-imported rows of ``mask`` with ``reason``; ``message(i)`` says why."""
    hit = np.flatnonzero(np.asarray(mask) & (rows["status"] == OK).to_numpy())
    for i in hit:
        log.add(reason, row_problem(rows, int(i), column_of, message(int(i))))
    if len(hit):
        rows.iloc[hit, rows.columns.get_loc("status")] = reason


#: Why a patient who died before day 0 is not imported (no follow-up can exist).
DECEASED_BEFORE_DAY_0 = "patient deceased before day 0"


def exclude_patients(
    patients: pd.DataFrame, rows: pd.DataFrame, mask, reason: str, log: RowLog
) -> pd.DataFrame:
    """``patients`` without those of ``mask``; their candidate rows get ``reason`` (counted, not problems)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return patients
    gone = rows["patient_id"].isin(patients.loc[mask, "patient_id"]).to_numpy()
    gone &= (rows["status"] == OK).to_numpy()
    rows.loc[gone, "status"] = reason
    log.skipped[f"{reason} (patients, not imported)"] += int(mask.sum())
    log.skipped[f"rows of a {reason}"] += int(gone.sum())
    return patients[~mask].reset_index(drop=True)


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def finish_measurements(
    rows: pd.DataFrame, mapping: Mapping, log: RowLog
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """Apply the shared rules; returns ``labs``, ``cells`` (None when none) and ``rows`` with its status.

    * a known test whose unit the contract does not accept (after the site's spellings
      are read): "unknown unit";
    * a test the contract does not know, given in a second unit: "unit change within a
      test" (the first unit seen is kept: the contract allows one unit per such test);
    * cells in a unit that is not a fraction or a percentage: "unknown unit";
    * several rows of one (patient, day, test) that agree (in canonical units) are one
      measurement; if they disagree, none of them is imported ("conflicting duplicate").
    """
    rows = rows.reset_index(drop=True)
    rows["contract_unit"] = None
    lab = (rows["kind"] == "lab").to_numpy()
    # units of lab rows: one look-up per distinct (test, unit), not per row
    pairs = rows.loc[lab, ["name", "unit"]].drop_duplicates()
    spelled = {(t, u): mapping.contract_unit(t, u) for t, u in pairs.itertuples(index=False)}
    contract = np.array([spelled.get((t, u)) if k else None for t, u, k in
                         zip(rows["name"], rows["unit"], lab, strict=True)], dtype=object)  # fmt: skip
    rows["contract_unit"] = contract
    bad = lab & pd.isna(contract)
    reject(rows, bad, "unknown unit", log, "unit_col", lambda i: (
        f"unknown unit {_py(rows['unit'].iloc[i])!r} for test {rows['name'].iloc[i]!r} "
        f"(source code {rows['code'].iloc[i]!r}); accepted: {units.accepted_units(rows['name'].iloc[i])}"
        " - or name its spelling under 'units:' in the mapping file"
    ))  # fmt: skip

    # one unit per test the contract does not know
    other = (
        lab & ~rows["name"].isin(units.KNOWN_TESTS).to_numpy() & (rows["status"] == OK).to_numpy()
    )
    first_unit = rows[other].groupby("name", sort=False)["contract_unit"].first()
    changed = other & (rows["contract_unit"] != rows["name"].map(first_unit)).to_numpy()
    reject(rows, changed, "unit change within a test", log, "unit_col", lambda i: (
        f"test {rows['name'].iloc[i]!r} changes unit from {first_unit[rows['name'].iloc[i]]!r} to "
        f"{_py(rows['unit'].iloc[i])!r}; the contract keeps one unit per test (the first one seen)"
    ))  # fmt: skip

    # cell fractions
    cells_mask = (rows["kind"] == "cells").to_numpy()
    frac_factor = np.array([FRACTION_UNITS.get(str(u).strip().lower(), np.nan) if c else np.nan
                            for u, c in zip(rows["unit"], cells_mask, strict=True)])  # fmt: skip
    reject(rows, cells_mask & np.isnan(frac_factor), "unknown unit", log, "unit_col", lambda i: (
        f"unknown unit {_py(rows['unit'].iloc[i])!r} for the cell fraction {rows['name'].iloc[i]!r}; "
        f"accepted: {sorted(FRACTION_UNITS)}"
    ))  # fmt: skip
    rows.loc[cells_mask, "contract_unit"] = "fraction"

    # canonical values, for the duplicate rule only (the labs keep the site's unit)
    canonical = rows["value"].to_numpy(dtype=float).copy()
    ok_lab = lab & (rows["status"] == OK).to_numpy()
    if ok_lab.any():
        canonical[ok_lab] *= units.factors_for(
            rows.loc[ok_lab, "name"], rows.loc[ok_lab, "contract_unit"]
        )
    canonical[cells_mask] *= frac_factor[cells_mask]
    rows["canonical"] = canonical
    _conflicting_duplicates(rows, log)

    keep = (rows["status"] == OK).to_numpy()
    first = ~rows[["patient_id", "day", "kind", "name"]].duplicated().to_numpy()
    merged = keep & ~first
    log.skipped["identical duplicate (merged into one row)"] += int(merged.sum())
    rows.loc[merged, "status"] = "identical duplicate (merged)"
    keep &= first

    labs_rows = rows[keep & lab]
    labs = pd.DataFrame({
        "patient_id": labs_rows["patient_id"].astype(str).to_numpy(),
        "day": labs_rows["day"].to_numpy().astype(np.int64),
        "test": labs_rows["name"].astype(str).to_numpy(),
        "value": labs_rows["value"].to_numpy(dtype=float),
        "unit": labs_rows["contract_unit"].astype(str).to_numpy(),
    })  # fmt: skip
    cells = None
    if cells_mask.any():
        c = rows[keep & cells_mask]
        cells = pd.DataFrame({
            "patient_id": c["patient_id"].astype(str).to_numpy(),
            "day": c["day"].to_numpy().astype(np.int64),
            "population": c["name"].astype(str).to_numpy(),
            "parent": c["parent"].astype(str).to_numpy(),
            "fraction": c["canonical"].to_numpy(dtype=float),
        })  # fmt: skip
    return labs, cells, rows


def _conflicting_duplicates(rows: pd.DataFrame, log: RowLog) -> None:
    ok = rows["status"] == OK
    key = ["patient_id", "day", "kind", "name"]
    dup = ok & rows.duplicated(key, keep=False)
    if not dup.any():
        return
    groups = rows[dup].groupby(key, sort=False)["canonical"]
    spread = groups.transform("max") - groups.transform("min")
    scale = groups.transform(lambda v: np.abs(v).max())
    conflict = pd.Series(False, index=rows.index)
    conflict[spread.index] = (spread > 1e-9 * np.maximum(scale, 1e-12)).to_numpy()
    values = (
        rows[dup]
        .groupby(key, sort=False)["value"]
        .transform(lambda v: ", ".join(f"{x:g}" for x in v))
    )
    reject(rows, conflict.to_numpy(), "conflicting duplicate", log, "value_col", lambda i: (
        f"conflicting duplicate: {rows['name'].iloc[i]!r} on day {int(rows['day'].iloc[i])} for patient "
        f"{rows['patient_id'].iloc[i]!r} is given as {values[i]} (none of them imported)"
    ))  # fmt: skip


#: Columns of the ``patients`` table an import writes (regimen and etiology when known).
PATIENT_COLUMNS = ["patient_id", "sex", "age_years", "etiology", "arm",
                   "dose_per_infusion", "n_infusions", "interval_days"]  # fmt: skip


@dataclass
class Imported:
    """A source turned into the contract's tables, with everything the report needs.

    ``rows`` holds every candidate measurement with its status; ``report`` the
    format's own sections (sources read, day anchors, regimen, what is absent).
    """

    patients: pd.DataFrame
    labs: pd.DataFrame
    cells: pd.DataFrame | None
    rows: pd.DataFrame
    log: RowLog
    report: dict


def summarise_regimen(infusions: pd.DataFrame, log: RowLog, where) -> tuple[pd.DataFrame, int]:
    """Per patient: dose per infusion (cells), number of MSC infusions, mean interval (days).

    ``infusions`` has one row per MSC infusion: ``patient_id``, ``cells``, ``position``
    (its day on any one time line of that patient) and ``bad`` (a problem of that
    infusion is already listed: that patient's regimen stays empty). ``where(i, message)``
    makes the problem of infusion row ``i`` when the doses of one patient differ (the
    contract has one dose per infusion). Returns the table and how many patients had
    unequal intervals (their mean is used).
    """
    out, unequal = [], 0
    for pid, g in infusions.groupby("patient_id", sort=False):
        entry = {"patient_id": pid, "dose_per_infusion": np.nan, "n_infusions": np.nan,
                 "interval_days": np.nan}  # fmt: skip
        doses = g["cells"].to_numpy(dtype=float)
        if g["bad"].any():
            pass  # the problem is listed; this patient's regimen stays empty
        elif not np.allclose(doses, doses[0], rtol=1e-9):
            i = int(np.flatnonzero(~np.isclose(doses, doses[0], rtol=1e-9))[0])
            log.add("doses differ between infusions", where(g.index[i], (
                f"the MSC doses of this patient differ between infusions "
                f"({', '.join(f'{d:g}' for d in doses)} cells); the contract has one dose per infusion")))  # fmt: skip
        else:
            gaps = np.diff(np.sort(g["position"].to_numpy(dtype=float)))
            unequal += bool(len(gaps) > 1 and not np.allclose(gaps, gaps[0]))
            entry.update(dose_per_infusion=float(doses[0]), n_infusions=float(len(g)),
                         interval_days=float(np.mean(gaps)) if len(gaps) else 0.0)  # fmt: skip
        out.append(entry)
    cols = ["patient_id", "dose_per_infusion", "n_infusions", "interval_days"]
    return pd.DataFrame(out, columns=cols), unequal
