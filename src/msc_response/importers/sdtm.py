"""CDISC SDTM domains (DM, LB, EX, and findings domains a mapping names) into a study.

* **Files.** Each domain is one file named after it (``dm.xpt``, ``LB.csv``, ...): SAS
  transport v5 or v8 and ``.sas7bdat`` through pyreadstat, ``.csv`` (every cell read as
  text, so ``001`` stays ``001``) and ``.parquet`` through pandas. Variable names are
  matched in upper case.
* **Patients** (DM): ``patient_id`` is USUBJID exactly as written; SEX, AGE in years
  (AGEU YEARS, MONTHS, WEEKS or DAYS, or AGE as an ISO 8601 duration ``P45Y``; AGETXT, a
  range, as its midpoint when AGE is absent); the arm from ACTARM (what was given,
  matching EX), else ARM. A patient whose DTHDTC is before day 0 is not imported.
* **Regimen** (EX): the records whose EXTRT is an MSC infusion (see
  :meth:`Mapping.is_msc`), one record per infusion: dose per infusion in cells (EXDOSE in
  EXDOSU: ``cells``, ``10^8 cells``, ...), the number of infusions and the mean interval
  between them.
* **Labs** (LB, and tests a mapping places in other findings domains): LBSTRESN in
  LBSTRESU, or LBORRES in LBORRESU when the standard result is empty. A code measured in
  a specimen other than blood is a test of its own (``BILI_URINE``); a blank unit of a
  test the contract does not know is written as ``1``; text results (COLOR 'YELLOW') and
  LBSTAT 'NOT DONE' records are counted, not imported. Other domains (VS: vital signs)
  are read only when a mapping file names a test there.
* **Days.** SDTM study days have no day 0: ``--DY = 1`` is the reference start date
  (RFSTDTC), ``-1`` the day before. The contract counts days from the first MSC infusion
  (day 0). Both are turned into days elapsed since RFSTDTC (``DY - 1`` from day 1 on,
  ``DY`` before it) and the first infusion's is subtracted, so a reference start that is
  not the first infusion (randomisation, screening) shifts every day by the offset. When
  ``--DY`` is empty the date ``--DTC`` is counted from the first MSC infusion's date in EX
  (or RFXSTDTC, the first exposure, when EX has no date). A patient with no MSC infusion
  is counted from the reference start, and the report says how many.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .. import units
from ..errors import DataError, Problem
from .mapping import Mapping, cells_per_dose_unit, specimen_test
from .rows import (
    DECEASED_BEFORE_DAY_0,
    OK,
    PATIENT_COLUMNS,
    ROW_COLUMNS,
    Imported,
    RowLog,
    exclude_patients,
    file_sha256,
    finish_measurements,
    summarise_regimen,
)
from .text import read_csv_text, used_columns, with_fallback

SUFFIXES = (".xpt", ".sas7bdat", ".csv", ".parquet")

#: AGEU (CDISC controlled terminology, and the singular and one-letter spellings) -> units per year.
AGE_UNITS_PER_YEAR: dict[str, float] = {
    "YEARS": 1.0, "YEAR": 1.0, "Y": 1.0,
    "MONTHS": 12.0, "MONTH": 12.0,
    "WEEKS": 365.25 / 7, "WEEK": 365.25 / 7,
    "DAYS": 365.25, "DAY": 365.25, "D": 365.25,
}  # fmt: skip
REQUIRED_DOMAINS = ("DM", "LB", "EX")


# ----------------------------------------------------------------------------------------
# reading domain files


def find_domain(src: Path, domain: str, *, required: bool, why: str = "") -> Path | None:
    """The one file of ``domain`` in ``src`` (any supported format); two are ambiguous."""
    found = sorted(p for p in src.iterdir()
                   if p.is_file() and p.stem.upper() == domain and p.suffix.lower() in SUFFIXES)  # fmt: skip
    if len(found) > 1:
        raise DataError([Problem(found[0].name, None, None,
                                 f"domain {domain} is given twice ({', '.join(p.name for p in found)}); keep one")])  # fmt: skip
    if not found:
        if required:
            raise DataError([Problem(f"{domain.lower()}.xpt", None, None,
                                     f"required domain {domain} is missing from {src.name!r}"
                                     f" (looked for {domain.lower()} with {', '.join(SUFFIXES)}){why}")])  # fmt: skip
        return None
    return found[0]


def split_domains(src: Path, domain: str) -> list[str]:
    """The datasets a domain is split into (SDTMIG: ``lbch``, ``lbhe``, ``lbur`` for LB), by name."""
    return sorted({p.stem.upper() for p in src.iterdir()
                   if p.is_file() and p.suffix.lower() in SUFFIXES and p.stem.upper().startswith(domain)
                   and 1 <= len(p.stem) - len(domain) <= 2 and p.stem.isalnum()})  # fmt: skip


#: Variables the import reads, by domain prefix (``--`` is the domain's two letters);
#: only these are decoded, so an undecodable byte elsewhere (a comment, a label) is harmless.
USED_VARIABLES = ("USUBJID", "SEX", "AGE", "AGETXT", "AGEU", "ARM", "ACTARM", "RFSTDTC", "RFXSTDTC", "DTHDTC",
                  "DTHFL", "EXTRT", "EXDOSE", "EXDOSU", "EXSTDY", "EXSTDTC")  # fmt: skip
FINDINGS_VARIABLES = ("TESTCD", "TEST", "STRESN", "STRESC", "STRESU", "ORRES", "ORRESU", "SPEC",
                      "STAT", "DY", "DTC")  # fmt: skip


def _read_sas(path: Path, encoding: str | None, needed: set[str] | None) -> pd.DataFrame:
    import pyreadstat

    reader = pyreadstat.read_xport if path.suffix.lower() == ".xpt" else pyreadstat.read_sas7bdat
    _, meta = reader(path, metadataonly=True, encoding=encoding)
    _check_twice(path, meta.column_names)
    df, _ = reader(path, disable_datetime_conversion=True, encoding=encoding,
                   usecols=used_columns(meta.column_names, needed))  # fmt: skip
    return df


def _check_twice(path: Path, names) -> None:
    upper = [str(c).strip().upper() for c in names]
    twice = sorted({c for c in upper if upper.count(c) > 1})
    if twice:
        raise DataError([Problem(path.name, None, c, "variable given twice (names are matched in upper case)")
                         for c in twice])  # fmt: skip


def read_domain(
    path: Path, *, encoding: str | None = None, needed: set[str] | None = None
) -> tuple[pd.DataFrame, str | None]:
    """A domain file as a frame with upper-case column names, and a note on its encoding.

    Only the variables in ``needed`` (upper case; None: all) are read; the encoding rule
    is :mod:`.text`'s. Unreadable is a structural problem.
    """
    import pyreadstat

    readstat_errors = (pyreadstat.ReadstatError, pyreadstat.PyreadstatError)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xpt", ".sas7bdat"):
            df, note = with_fallback(
                lambda enc: _read_sas(path, enc, needed), encoding, readstat_errors
            )
        elif suffix == ".csv":
            df, note = read_csv_text(
                path, encoding, needed, lambda names: _check_twice(path, names)
            )
        else:
            df, note = pd.read_parquet(path), None
            _check_twice(path, list(df.columns))
    except (OSError, ValueError, LookupError, *readstat_errors) as err:
        how = f" with --encoding {encoding!r}" if encoding else ""
        raise DataError(
            [Problem(path.name, None, None, f"cannot read the file{how}: {err}")]
        ) from None
    df.columns = [str(c).strip().upper() for c in df.columns]
    return df.reset_index(drop=True), note


_ISO_DURATION = re.compile(
    r"^P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?$"
)


def iso_duration_years(value) -> float:
    """An ISO 8601 duration of years, months, weeks and days in years (NaN if it is not one).

    ``P45Y`` -> 45, ``P6M`` -> 0.5, ``P2Y6M`` -> 2.5, ``P30D`` -> 30 / 365.25.
    """
    m = _ISO_DURATION.match(str(value).strip().upper()) if value is not None else None
    if m is None or not any(m.groupdict().values()):
        return np.nan
    y, mo, w, d = (float(m.group(k) or 0) for k in "ymwd")
    return y + mo / 12 + (w * 7 + d) / 365.25


_AGE_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")


def age_range_midpoint(value) -> float:
    """An age range as AGETXT writes it (``6-7``) as its midpoint (6.5); NaN if it is not one."""
    m = _AGE_RANGE.match(str(value)) if value is not None else None
    return np.nan if m is None else (float(m.group(1)) + float(m.group(2))) / 2


def require(df: pd.DataFrame, file: str, columns, *, one_of=()) -> None:
    """Structural: every column of ``columns``, and at least one of each group in ``one_of``."""
    problems = [
        Problem(file, None, c, "required variable is missing") for c in columns if c not in df
    ]
    for group in one_of:
        if not any(c in df for c in group):
            problems.append(Problem(file, None, group[0],
                                    f"required variable is missing (give {' or '.join(group)})"))  # fmt: skip
    if problems:
        raise DataError(problems)


def text(df: pd.DataFrame, column: str, *, strip: bool = True) -> pd.Series:
    """Column as Python strings, None where absent or blank (SAS writes missing text as blank)."""
    if column not in df:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    s = df[column]
    out = s.astype(object).where(s.notna(), None)
    out = out.map(lambda v: None if v is None else (str(v).strip() if strip else str(v)))
    blank = out.map(lambda v: v is None or str(v).strip() == "")
    return out.where(~blank, None)


def numbers(df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Column as floats, and a mask of the cells that hold text which is not a number."""
    if column not in df:
        return np.full(len(df), np.nan), np.zeros(len(df), dtype=bool)
    s = df[column]
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float), np.zeros(len(df), dtype=bool)
    t = text(df, column)
    values = pd.to_numeric(t, errors="coerce").to_numpy(dtype=float)
    return values, (np.isnan(values) & t.notna()).to_numpy()


def dates(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 dates (``2024-03-01``, ``2024-03-01T08:30``) as datetime64[D]; mask of incomplete ones."""
    head = s.map(lambda v: v[:10] if isinstance(v, str) else None)
    parsed = pd.to_datetime(head, format="%Y-%m-%d", errors="coerce")
    out = parsed.to_numpy(dtype="datetime64[D]")
    return out, (s.notna() & parsed.isna()).to_numpy()


def elapsed_since_reference(study_day) -> np.ndarray:
    """SDTM study day -> days elapsed since the reference start (day 1 -> 0, day -1 -> -1).

    Study day 0 does not exist; it comes back as NaN (the caller reports it).
    """
    dy = np.asarray(study_day, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(dy >= 1, dy - 1, np.where(dy <= -1, dy, np.nan))


def _days_between(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    diff = (later - earlier).astype("timedelta64[D]").astype(float)
    return np.where(np.isnat(later) | np.isnat(earlier), np.nan, diff)


# ----------------------------------------------------------------------------------------
# the import


class _Sdtm:
    """One SDTM import: reads the domains, collects row problems, builds the tables."""

    def __init__(self, src: Path, mapping: Mapping, encoding: str | None = None):
        self.src, self.mapping, self.log, self.encoding = src, mapping, RowLog(), encoding
        self.report: dict = {"format": "sdtm", "files": {}}
        self.not_imported: dict[str, str] = {}  # patient -> why (bad DM row)

    def problem(self, reason: str, file: str, row, column, message: str) -> None:
        self.log.add(reason, Problem(file, None if row is None else int(row), column, message))

    def domain(
        self, name: str, *, required: bool, why: str = "", extra=()
    ) -> tuple[pd.DataFrame, str] | None:
        path = find_domain(self.src, name, required=required, why=why)
        if path is None:
            return None
        p = name[:2]
        needed = {*USED_VARIABLES, *(p + v for v in FINDINGS_VARIABLES), *extra}
        df, note = read_domain(path, encoding=self.encoding, needed=needed)
        self.report["files"][name] = {
            "file": path.name,
            "rows": len(df),
            "sha256": file_sha256(path),
            **({"encoding": self.encoding} if self.encoding else {}),
            **({"encoding_note": note} if note else {}),
        }
        return df, path.name

    # -- DM ------------------------------------------------------------------------------
    def patients(self) -> pd.DataFrame:
        dm, file = self.domain("DM", required=True)
        require(dm, file, ["USUBJID", "SEX"], one_of=[("AGE", "AGETXT")])
        # AGETXT (an age range, "6-7") stands in for AGE when AGE is not collected (SEND)
        age_var = "AGE" if "AGE" in dm else "AGETXT"
        ids_raw = text(dm, "USUBJID", strip=False)
        missing = ids_raw.isna().to_numpy()
        dup = ids_raw.duplicated(keep=False).to_numpy() & ~missing
        if dup.any():  # structural: which of two patients would a lab row belong to?
            raise DataError([Problem(file, i + 1, "USUBJID", f"duplicate USUBJID (rows {', '.join(str(j + 1) for j in np.flatnonzero(dup & (ids_raw == ids_raw.iloc[i]).to_numpy()))})")
                             for i in np.flatnonzero(dup)])  # fmt: skip
        rows = np.arange(1, len(dm) + 1)
        bad = np.zeros(len(dm), dtype=bool)

        def flag(mask, reason, column, message):
            for i in np.flatnonzero(mask & ~bad):
                self.problem(reason, file, rows[i], column, message(i))
            bad[:] |= mask

        flag(missing, "patient id missing", "USUBJID", lambda i: "USUBJID is missing")
        spaced = np.array([v is not None and v != v.strip() for v in ids_raw])
        flag(spaced, "patient id with surrounding whitespace", "USUBJID",
             lambda i: "USUBJID has surrounding whitespace (ids are kept as written; fix the source)")  # fmt: skip
        sex_raw = text(dm, "SEX").map(lambda v: None if v is None else v.upper())
        sex_ok = sex_raw.isin(["F", "M"]).to_numpy()
        flag(~sex_ok, "sex not F or M", "SEX",
             lambda i: f"SEX {sex_raw.iloc[i]!r} is neither 'F' nor 'M' (the scores need one of them)")  # fmt: skip
        age, age_text = numbers(dm, age_var)
        age_written = text(dm, age_var)
        ranged = np.array(
            [
                age_range_midpoint(v) if t else np.nan
                for v, t in zip(age_written, age_text, strict=True)
            ]
        )
        age = np.where(np.isnan(ranged), age, ranged)
        age_text &= np.isnan(ranged)
        iso = np.array(
            [
                iso_duration_years(v) if t else np.nan
                for v, t in zip(age_written, age_text, strict=True)
            ]
        )
        age_text &= np.isnan(iso)  # an ISO 8601 duration (P45Y, P6M) is an age, not text
        flag(
            age_text,
            "not a number",
            age_var,
            lambda i: (
                f"{age_var} {age_written.iloc[i]!r} is neither a number nor an ISO 8601 duration (P45Y)"
            ),
        )
        flag(
            np.isnan(age) & np.isnan(iso) & ~age_text,
            "age missing",
            age_var,
            lambda i: f"{age_var} is missing",
        )
        ageu = text(dm, "AGEU").map(lambda v: None if v is None else v.upper())
        per_year = ageu.map(lambda u: AGE_UNITS_PER_YEAR.get(u or "YEARS", np.nan)).to_numpy(
            dtype=float
        )
        flag(np.isnan(per_year) & np.isnan(iso), "unknown age unit", "AGEU",
             lambda i: f"AGEU {ageu.iloc[i]!r} is not one of {sorted(AGE_UNITS_PER_YEAR)}")  # fmt: skip
        age = np.where(np.isnan(iso), age / per_year, iso)
        self.report["ages"] = {
            "from": age_var + (" (ranges 'a-b': the midpoint)" if age_var == "AGETXT" else ""),
            "ranges_read_as_their_midpoint": int((~np.isnan(ranged) & ~bad).sum()),
            "converted_to_years": {u: int(n) for u, n in Counter(
                "ISO 8601 duration" if not np.isnan(v) else (u or "YEARS (AGEU blank)")
                for u, v, b in zip(ageu, iso, bad, strict=True) if not b).items()},
        }  # fmt: skip
        for i in np.flatnonzero(bad & ~missing):
            self.not_imported[ids_raw.iloc[i]] = f"DM row {rows[i]}"

        arm_var = self.mapping.arm
        if arm_var is None:
            actarm = text(dm, "ACTARM")
            arm = actarm.where(actarm.notna(), text(dm, "ARM"))
            arm_from = "ACTARM, else ARM" if "ACTARM" in dm else ("ARM" if "ARM" in dm else None)
        else:
            require(dm, file, [arm_var])
            arm, arm_from = text(dm, arm_var), arm_var
        self.report["patients"] = {"patient_id": "DM.USUBJID, exactly as written", "arm": arm_from,
                                   "in_source": int(len(dm)), "not_imported": int(bad.sum())}  # fmt: skip
        out = pd.DataFrame({
            "patient_id": ids_raw, "sex": sex_raw, "age_years": age, "arm": arm,
            "_rfst": dates(text(dm, "RFSTDTC"))[0], "_rfxst": dates(text(dm, "RFXSTDTC"))[0],
            "_death": dates(text(dm, "DTHDTC"))[0],
        })  # fmt: skip
        return out[~bad].reset_index(drop=True)

    def _known_patient(self, ids: pd.Series, file: str, rows: np.ndarray, domain: str,
                       known: pd.Index, consider) -> np.ndarray:  # fmt: skip
        """Mask of rows whose patient was imported; the others (of ``consider``) are row problems."""
        ok = ids.isin(known).to_numpy()
        for i in np.flatnonzero(~ok & consider):
            pid = ids.iloc[i]
            if pid is None:
                self.problem("patient id missing", file, rows[i], "USUBJID", "USUBJID is missing")
            elif pid in self.not_imported:
                self.log.add_row_of_patient_not_imported(file, f"see {self.not_imported[pid]}")
            else:
                self.problem("patient not in DM", file, rows[i], "USUBJID",
                             f"USUBJID is not in DM ({domain} row of an unknown subject)")  # fmt: skip
        return ok

    # -- EX ------------------------------------------------------------------------------
    def regimen(self, patients: pd.DataFrame) -> pd.DataFrame:
        """Per patient: dose per infusion, infusions, interval, and the first infusion (anchor)."""
        ex, file = self.domain("EX", required=True)
        require(ex, file, ["USUBJID", "EXTRT", "EXDOSE", "EXDOSU"], one_of=[("EXSTDY", "EXSTDTC")])
        treatments = text(ex, "EXTRT")
        msc = np.array([self.mapping.is_msc(t) for t in treatments])
        self.report["treatments"] = [
            {"EXTRT": t, "records": int(n), "msc_infusion": bool(self.mapping.is_msc(t))}
            for t, n in Counter(treatments.fillna("")).most_common()
        ]
        rows = np.arange(1, len(ex) + 1)
        ids = text(ex, "USUBJID", strip=False)
        index = pd.Index(patients["patient_id"])
        use = msc & self._known_patient(ids, file, rows, "EX", index, msc)
        dose, dose_text = numbers(ex, "EXDOSE")
        per_unit = np.array([cells_per_dose_unit(u) or np.nan for u in text(ex, "EXDOSU")])
        ref = patients.set_index("patient_id")["_rfst"].reindex(ids).to_numpy(dtype="datetime64[D]")
        ex_date, partial = dates(text(ex, "EXSTDTC"))
        exdy = numbers(ex, "EXSTDY")[0]
        elapsed = elapsed_since_reference(exdy)
        elapsed = np.where(np.isnan(elapsed), _days_between(ex_date, ref), elapsed)
        # the date of each infusion: as written, else from the reference start and the study day
        shifted = ref + np.nan_to_num(elapsed).astype("timedelta64[D]")
        ex_date = np.where(np.isnat(ex_date) & ~np.isnan(elapsed), shifted, ex_date)
        bad = np.zeros(len(ex), dtype=bool)

        def flag(mask, reason, column, message):
            for i in np.flatnonzero(mask & use & ~bad):
                self.problem(reason, file, rows[i], column, message(i))
            bad[:] |= mask & use

        flag(
            dose_text,
            "not a number",
            "EXDOSE",
            lambda i: f"EXDOSE {text(ex, 'EXDOSE').iloc[i]!r} is not a number",
        )
        flag(np.isnan(dose) & ~dose_text, "dose missing", "EXDOSE", lambda i: "EXDOSE is missing")
        flag(np.isnan(per_unit), "unknown dose unit", "EXDOSU",
             lambda i: f"dose unit {text(ex, 'EXDOSU').iloc[i]!r} is not a number of cells "
                       "('cells', '10^8 cells', ...; doses per kg need body weight and are not imported)")  # fmt: skip
        flag(
            exdy == 0,
            "study day 0",
            "EXSTDY",
            lambda i: "EXSTDY 0 does not exist in SDTM (day 1 is the reference start)",
        )
        flag(np.isnan(elapsed) & np.isnat(ex_date) & (exdy != 0), "infusion day unknown",
             "EXSTDTC" if partial.any() else "EXSTDY",
             lambda i: "no study day (EXSTDY) and no complete date (EXSTDTC) of this infusion")  # fmt: skip
        given = use & (np.nan_to_num(dose) > 0)
        self.log.skipped["EX record of an MSC treatment with dose 0 (not an infusion)"] += int(
            (use & (dose == 0)).sum()
        )

        inf = pd.DataFrame({"patient_id": ids, "cells": dose * per_unit, "elapsed": elapsed,
                            "date": ex_date, "bad": bad, "row": rows})[given | (use & bad)]  # fmt: skip
        # one time line per patient: study days when every infusion has one, else dates
        all_elapsed = inf["elapsed"].notna().groupby(inf["patient_id"]).transform("all")
        date_days = inf["date"].to_numpy(dtype="datetime64[D]").astype(float)
        inf["position"] = np.where(all_elapsed, inf["elapsed"], date_days)
        good = inf[~inf["bad"]]
        first = good.groupby("patient_id", sort=False).agg(first_elapsed=("elapsed", "min"),
                                                            first_date=("date", "min"))  # fmt: skip
        summary, unequal = summarise_regimen(
            inf,
            self.log,
            lambda i, message: Problem(file, int(inf.loc[i, "row"]), "EXDOSE", message),
        )
        regimen = summary.join(first, on="patient_id")
        self.report["regimen"] = {
            "msc_infusions": "EX records whose EXTRT is an MSC treatment (default rule: the text says "
                             "'mesenchymal' or 'MSC'; plus the mapping file's msc_treatments)",
            "patients_with_msc_infusions": int(len(regimen)),
            "patients_without_msc_infusion": int(len(patients) - len(regimen)),
            "patients_with_unequal_intervals (mean used)": int(unequal),
        }  # fmt: skip
        return regimen

    # -- findings: LB and the domains the mapping names -----------------------------------
    def measurements(self, patients: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
        m = self.mapping
        by_domain: dict[str, dict[str, tuple[str, str, object]]] = {}
        for test, s in m.findings.items():
            by_domain.setdefault(s.domain, {})[s.testcd] = ("lab", test, s)
        for pop, s in m.cells.items():
            by_domain.setdefault(s.domain, {})[s.testcd] = ("cells", pop, s)
        # LB as one dataset, or split by category (lbch, lbhe, lbur) as the SDTMIG allows
        lb_codes = by_domain.pop("LB", {})
        whole = find_domain(self.src, "LB", required=False)
        lb = ["LB"] if whole is not None else split_domains(self.src, "LB") or ["LB"]
        self.report["lb_datasets"] = lb
        frames = [self._findings(name, lb_codes, patients, anchors, all_codes=True) for name in lb]
        for domain, codes in by_domain.items():
            frames.append(self._findings(domain, codes, patients, anchors, all_codes=False))
        return pd.concat(frames, ignore_index=True)

    def _findings(self, domain, codes, patients, anchors, *, all_codes) -> pd.DataFrame:
        p = domain[:2]
        why = f" (the mapping file places {', '.join(sorted(v[1] for v in codes.values()))} there)"
        df, file = self.domain(domain, required=True, why="" if p == "LB" else why)
        require(
            df,
            file,
            ["USUBJID", f"{p}TESTCD"],
            one_of=[(f"{p}STRESN", f"{p}ORRES"), (f"{p}DY", f"{p}DTC")],
        )
        if p == "LB":
            require(df, file, ["LBSTRESN", "LBSTRESU"])
        testcd = text(df, f"{p}TESTCD")
        n = len(df)
        kind = np.full(n, "lab", dtype=object)
        name = testcd.to_numpy(dtype=object).copy()
        parent = np.full(n, None, dtype=object)
        value_map = [None] * n
        status = np.full(n, OK, dtype=object)
        spec = text(df, f"{p}SPEC").map(lambda v: "" if v is None else v.upper())
        for i, code in enumerate(testcd):
            if code in codes:
                kind[i], name[i], src = codes[code]
                parent[i], value_map[i] = src.parent, src.values
            elif all_codes and code is not None:
                # in blood: the mapped test or the code itself; elsewhere BILI_URINE, PROT_URINE
                blood = specimen_test(code, spec.iloc[i]) == code
                name[i] = (
                    self.mapping.tests.get(code, code)
                    if blood
                    else specimen_test(code, spec.iloc[i])
                )
            elif not all_codes:
                status[i] = f"not in the mapping ({domain})"
        self.log.skipped[f"{domain} test codes the mapping does not name"] += int(
            (status != OK).sum()
        )

        # the value: standard result, else the result as collected
        stresn, _ = numbers(df, f"{p}STRESN")
        orres = text(df, f"{p}ORRES")
        stresc = text(df, f"{p}STRESC")
        orres_num, orres_text = numbers(df, f"{p}ORRES")
        value = stresn.copy()
        unit = text(df, f"{p}STRESU").to_numpy(dtype=object)
        value_col = np.full(n, f"{p}STRESN", dtype=object)
        unit_col = np.full(n, f"{p}STRESU", dtype=object)
        fallback = np.isnan(stresn)
        value[fallback] = orres_num[fallback]
        unit[fallback] = text(df, f"{p}ORRESU").to_numpy(dtype=object)[fallback]
        value_col[fallback], unit_col[fallback] = f"{p}ORRES", f"{p}ORRESU"
        for i in np.flatnonzero(np.isnan(value)):  # text results a mapping gives numbers for
            vm = value_map[i] or {}
            for t in (stresc.iloc[i], orres.iloc[i]):
                if t is not None and t.upper() in vm:
                    value[i], unit[i] = vm[t.upper()], ""
                    break
        rows = np.arange(1, n + 1)
        ids = text(df, "USUBJID", strip=False)
        known = self._known_patient(
            ids, file, rows, domain, pd.Index(patients["patient_id"]), status == OK
        )
        status[~known & (status == OK)] = "patient not imported or not in DM"
        not_done = (
            np.isnan(value)
            & text(df, f"{p}STAT").map(lambda v: (v or "").upper() == "NOT DONE").to_numpy()
        )
        status[not_done & (status == OK)] = "not done"
        self.log.skipped[f"{domain} record marked NOT DONE ({p}STAT)"] += int(
            (not_done & known).sum()
        )

        def flag(mask, reason, column_of, message):
            for i in np.flatnonzero(mask & (status == OK)):
                self.problem(reason, file, rows[i], column_of(i), message(i))
                status[i] = reason

        flag(
            testcd.isna().to_numpy(),
            "test code missing",
            lambda i: f"{p}TESTCD",
            lambda i: f"{p}TESTCD is missing",
        )
        # a text result (COLOR 'YELLOW', KETONES 'NEGATIVE') of a test the contract does not
        # know is not a measurement the contract holds: counted by test, not a problem
        text_result = (np.isnan(value) & (status == OK) & (stresc.notna() | orres.notna()).to_numpy()
                       & ~pd.Series(name).isin(units.KNOWN_TESTS).to_numpy())  # fmt: skip
        status[text_result] = "text result (not a number)"
        for test, n in Counter(name[text_result]).items():
            self.log.skipped[f"{domain} text result, not a number ({test})"] += n
        flag(fallback & orres_text & np.isnan(value), "not a number", lambda i: f"{p}ORRES",
             lambda i: f"{p}ORRES {orres.iloc[i]!r} is not a number ({p}STRESN is empty)")  # fmt: skip
        flag(np.isnan(value), "no result", lambda i: f"{p}STRESN",
             lambda i: f"no result: {p}STRESN and {p}ORRES are empty")  # fmt: skip

        day, day_problem = self._days(df, p, ids, anchors)
        flag(day_problem != "", "day unknown", lambda i: day_problem[i].split("|")[0],
             lambda i: day_problem[i].split("|")[1])  # fmt: skip
        return pd.DataFrame({
            "patient_id": ids.to_numpy(dtype=object), "day": day, "kind": kind, "name": name,
            "parent": parent, "value": value, "unit": unit,
            "code": [f"{domain} {c}" + (f" ({s})" if s and p == "LB" else "") for c, s in zip(testcd, spec, strict=True)],
            "file": file, "row": rows.astype(float), "ref": None,
            "value_col": value_col, "unit_col": unit_col, "status": status,
            "display": text(df, f"{p}TEST").to_numpy(dtype=object),
        })[ROW_COLUMNS]  # fmt: skip

    def _days(self, df, p, ids, anchors) -> tuple[np.ndarray, np.ndarray]:
        """Days from the first MSC infusion of each row; a ``"COLUMN|message"`` where it cannot be."""
        a = anchors.reindex(ids)
        first_elapsed = a["first_elapsed"].to_numpy(dtype=float)
        first_date = a["first_date"].to_numpy(dtype="datetime64[D]")
        ref = a["_rfst"].to_numpy(dtype="datetime64[D]")
        dy = numbers(df, f"{p}DY")[0]
        when, partial = dates(text(df, f"{p}DTC"))
        from_dy = elapsed_since_reference(dy) - first_elapsed
        from_date = _days_between(when, first_date)
        via_ref = (
            _days_between(when, ref) - first_elapsed
        )  # a date, when only study days place the infusion
        day = np.where(
            ~np.isnan(from_dy), from_dy, np.where(~np.isnan(from_date), from_date, via_ref)
        )
        problem = np.full(len(df), "", dtype=object)
        problem[np.isnan(day)] = (
            f"{p}DY|no study day ({p}DY) and no date ({p}DTC): the record cannot be placed in time"
        )
        has_dy, has_dtc = ~np.isnan(dy), ~np.isnat(when)
        problem[np.isnan(day) & partial & ~has_dy] = (
            f"{p}DTC|{p}DTC is not a complete date (YYYY-MM-DD)"
        )
        problem[np.isnan(day) & (has_dy | has_dtc)] = (
            f"{p}DY|the patient's first MSC infusion has no day or date in EX (and DM has no RFXSTDTC"
            " or RFSTDTC to count from)")  # fmt: skip
        problem[(dy == 0) & ~has_dtc] = (
            f"{p}DY|study day 0 does not exist in SDTM (day 1 is the reference start date)"
        )
        day[(dy == 0) & ~has_dtc] = np.nan
        return day, problem

    # -- etiology --------------------------------------------------------------------------
    def etiology(self, patients: pd.DataFrame) -> pd.Series | None:
        e = self.mapping.etiology
        if e is None:
            return None
        df, file = self.domain(e.domain, required=True, why=" (the mapping file's etiology names it)",
                               extra=(e.variable, *e.where))  # fmt: skip
        require(df, file, ["USUBJID", e.variable, *e.where])
        keep = np.ones(len(df), dtype=bool)
        for var, wanted in e.where.items():
            keep &= (text(df, var) == wanted).to_numpy()
        values = pd.DataFrame({"patient_id": text(df, "USUBJID", strip=False), "v": text(df, e.variable),
                               "row": np.arange(1, len(df) + 1)})[keep & text(df, e.variable).notna().to_numpy()]  # fmt: skip
        out = {}
        for pid, g in values.groupby("patient_id", sort=False):
            distinct = list(dict.fromkeys(g["v"]))
            if len(distinct) > 1:
                self.problem("conflicting etiology", file, g["row"].iloc[1], e.variable,
                             f"the patient has {len(distinct)} etiologies {distinct}; etiology left empty")  # fmt: skip
            else:
                out[pid] = distinct[0]
        return patients["patient_id"].map(out)

    def run(self) -> Imported:
        patients = self.patients()
        regimen = self.regimen(patients)
        anchors = self._anchors(patients, regimen)
        rows = self.measurements(patients, anchors)
        # day 0 as a date: the first infusion's, else the reference start shifted by its study day
        a = anchors.reindex(patients["patient_id"])
        day0 = a["first_date"].to_numpy(dtype="datetime64[D]")
        shifted = a["_rfst"].to_numpy(dtype="datetime64[D]") + np.nan_to_num(
            a["first_elapsed"].to_numpy(dtype=float)).astype("timedelta64[D]")  # fmt: skip
        day0 = np.where(np.isnat(day0), shifted, day0)
        death = patients["_death"].to_numpy(dtype="datetime64[D]")
        dead = ~np.isnat(death) & ~np.isnat(day0) & (death < day0)
        patients = exclude_patients(patients, rows, dead, DECEASED_BEFORE_DAY_0, self.log)
        self.report["patients"]["deceased_before_day_0 (DM.DTHDTC, not imported)"] = int(dead.sum())
        labs, cells, rows = finish_measurements(rows, self.mapping, self.log)
        out = patients[["patient_id", "sex", "age_years"]].copy()
        etiology = self.etiology(patients)
        if etiology is not None:
            out["etiology"] = etiology
        if patients["arm"].notna().any():
            out["arm"] = patients["arm"]
        reg = regimen.set_index("patient_id").reindex(out["patient_id"])
        out["dose_per_infusion"] = reg["dose_per_infusion"].to_numpy()
        infused = out["patient_id"].isin(regimen["patient_id"]).to_numpy()
        out["n_infusions"] = np.where(infused, reg["n_infusions"].to_numpy(), 0.0)
        out["interval_days"] = reg["interval_days"].to_numpy()
        out = out[[c for c in PATIENT_COLUMNS if c in out]]
        return Imported(out, labs, cells, rows, self.log, self.report)

    def _anchors(self, patients: pd.DataFrame, regimen: pd.DataFrame) -> pd.DataFrame:
        """Per patient: the first MSC infusion as days since RFSTDTC and as a date."""
        a = patients.set_index("patient_id")[["_rfst", "_rfxst"]].join(
            regimen.set_index("patient_id")[["first_elapsed", "first_date"]]
        )
        has_msc = a.index.isin(regimen["patient_id"])
        # infusions known only by date: their offset from the reference start
        fe = a["first_elapsed"].to_numpy(dtype=float)
        fd = a["first_date"].to_numpy(dtype="datetime64[D]")
        rf, rfx = (
            a["_rfst"].to_numpy(dtype="datetime64[D]"),
            a["_rfxst"].to_numpy(dtype="datetime64[D]"),
        )
        by_rfx = has_msc & np.isnan(fe) & np.isnat(fd)
        fd = np.where(by_rfx, rfx, fd)
        fe = np.where(np.isnan(fe), _days_between(fd, rf), fe)
        # no MSC infusion: days from the reference start
        fe = np.where(has_msc, fe, 0.0)
        fd = np.where(has_msc, fd, rf)
        a["first_elapsed"], a["first_date"] = fe, fd
        self.report["days"] = {
            "rule": "days from each patient's first MSC infusion (day 0); SDTM --DY converted "
                    "(DY >= 1 -> DY - 1, DY <= -1 -> DY) and shifted by the infusion's own study day; "
                    "--DTC counted from the infusion's date when --DY is empty",
            "patients_anchored_on_first_msc_infusion_in_EX": int((has_msc & ~by_rfx).sum()),
            "patients_anchored_on_RFXSTDTC (EX has no day or date)": int(by_rfx.sum()),
            "patients_without_msc_infusion_anchored_on_RFSTDTC": int((~has_msc).sum()),
            "patients_whose_reference_start_is_not_the_first_infusion": int((has_msc & (np.nan_to_num(fe) != 0)).sum()),
        }  # fmt: skip
        return a


def import_sdtm(src: str | Path, mapping: Mapping, encoding: str | None = None) -> Imported:
    """Read the SDTM domains in ``src`` into the contract's tables (nothing is written).

    Raises
    ------
    DataError
        A structural problem: a required domain or variable missing, an unreadable file, a
        domain given twice, duplicate USUBJIDs in DM.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError(
            [Problem(src.name, None, None, f"SDTM source folder not found: {str(src)!r}")]
        )
    return _Sdtm(src, mapping, encoding).run()
