"""Reading and validating input tables: the per-visit score table and the study directory.

Validation is lazy: every problem in a file is collected (with file, row and column)
and raised together as one :class:`~msc_response.errors.DataError`. Row numbers are
1-based data rows; in a CSV the line number is the row number + 1 (the header).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from . import units
from .errors import DataError, Problem
from .io import TABLE_SUFFIXES, read_table

# ----------------------------------------------------------------------------------------
# shared helpers


def _range_check(test: str) -> pa.Check:
    low, high = units.PLAUSIBLE_RANGES[test]
    unit = units.CANONICAL_UNITS[test]
    if test in units.INTEGER_TESTS:
        allowed = list(range(int(low), int(high) + 1))
        return pa.Check.isin(allowed, error=f"must be one of {allowed} ({unit})")
    return pa.Check.in_range(
        low, high, error=f"outside the plausible range {low:g}-{high:g} {unit}"
    )


def schema_problems(
    schema: pa.DataFrameSchema,
    df: pd.DataFrame,
    file: str,
    rename: dict[str, str] | None = None,
    hint=None,
    rows=None,
) -> list[Problem]:
    """Run ``schema`` lazily on ``df`` and turn its failure cases into problems.

    ``rename`` maps a validated column back to the column name the user wrote
    (e.g. ``bilirubin`` -> ``bilirubin_umol_L``) so messages name what is in the file.
    ``hint(column, row_index)`` may return extra text for a failing cell.
    """
    rename = rename or {}
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        problems = []
        for case in err.failure_cases.itertuples(index=False):
            index = case.index
            row = None if index is None or pd.isna(index) else _row_number(rows, int(index))
            if case.column is None or pd.isna(case.column):  # a whole-frame check
                column, message = None, f"{case.check}: {case.failure_case!r}"
                if case.check == "column_in_dataframe":
                    column, message = str(case.failure_case), "required column is missing"
            else:
                column = rename.get(str(case.column), str(case.column))
                value = case.failure_case
                message = (
                    f"value {_py(value)!r} {case.check}" if row is not None else str(case.check)
                )
                if hint is not None and row is not None:
                    message += hint(str(case.column), int(index))
            problems.append(Problem(file, row, column, message))
        return problems
    return []


def numeric_problems(
    df: pd.DataFrame, columns: list[str], file: str, rows=None
) -> tuple[pd.DataFrame, list[Problem]]:
    """Coerce ``columns`` to float, reporting every non-numeric cell as a problem."""
    problems: list[Problem] = []
    out = df.copy()
    for col in columns:
        if col not in out.columns or pd.api.types.is_numeric_dtype(out[col]):
            continue
        raw = out[col]
        as_num = pd.to_numeric(raw, errors="coerce")
        bad = as_num.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        for idx in np.flatnonzero(bad.to_numpy())[:1000]:
            problems.append(
                Problem(
                    file,
                    _row_number(rows, int(idx)),
                    col,
                    f"value {_py(raw.iloc[idx])!r} is not a number",
                )
            )
        out[col] = as_num
    return out, problems


def _row_number(rows, position: int) -> int:
    return int(rows[position]) if rows is not None else position + 1


def row_numbers(df: pd.DataFrame):
    """The original 1-based row numbers a streamed chunk carries in ``_row`` (or None)."""
    return df["_row"].to_numpy() if "_row" in df.columns else None


def pop_row_numbers(df: pd.DataFrame):
    """:func:`row_numbers`, and ``_row`` removed from ``df``."""
    rows = row_numbers(df)
    if rows is not None:
        del df["_row"]
    return rows


def _py(value):
    """A numpy scalar as the plain Python value, so messages show ``38.0``, not ``np.float64(38.0)``."""
    return value.item() if isinstance(value, np.generic) else value


def unit_hint(test: str, value: float, unit: str) -> str:
    """ ", looks like <unit>" when the value would be plausible in another accepted unit."""
    suggestion = units.suggest_unit(test, value / units.factor_to_canonical(test, unit))
    if suggestion is not None and suggestion != unit:
        return f"; a value of this size looks like {suggestion}, not {unit}"
    return ""


def read_input_table(path: Path, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet input, turning unreadable files into a :class:`DataError`."""
    try:
        return read_table(path, categorical)
    except FileNotFoundError as err:
        raise DataError([Problem(path.name, None, None, f"file not found: {str(path)!r}")]) from err
    except (OSError, ValueError) as err:  # pyarrow's parse errors are ValueError subclasses
        raise DataError([Problem(path.name, None, None, f"cannot read the file: {err}")]) from err


# ----------------------------------------------------------------------------------------
# the study directory: patients, labs (long), cells or cells.h5ad

#: Problems reported per rule before the rest are summarised in one line.
MAX_PROBLEMS_PER_RULE = 20


@dataclass
class Study:
    """A validated study directory in canonical units.

    Attributes
    ----------
    patients : DataFrame
        One row per patient, in file order; ``patient_id`` is a string.
    labs : DataFrame
        ``pidx`` (row of ``patients``), ``day``, ``test`` (categorical), ``value`` in
        canonical units; identical duplicates dropped.
    cells : DataFrame or None
        ``pidx``, ``day``, ``population``, ``parent``, ``fraction``.
    lab_units : dict
        The unit of every test (canonical for known tests, the site's for others).
    files : dict
        The file each table was read from.
    """

    patients: pd.DataFrame
    labs: pd.DataFrame
    cells: pd.DataFrame | None
    lab_units: dict[str, str]
    files: dict[str, Path]
    cells_derived: bool = False


def is_simulated(directory: str | Path) -> bool:
    """True when the study directory was written by the simulator (its ``simulation.json`` says so)."""
    meta = Path(directory) / "simulation.json"
    if not meta.exists():
        return False
    try:
        return bool(json.loads(meta.read_text()).get("simulated"))
    except (OSError, json.JSONDecodeError):
        return False


def find_table(directory: Path, stem: str, *, required: bool) -> Path | None:
    """``directory/stem.csv`` or ``.parquet``; both present is ambiguous, none may be an error."""
    found = [
        directory / f"{stem}{suffix}"
        for suffix in TABLE_SUFFIXES
        if (directory / f"{stem}{suffix}").exists()
    ]
    if len(found) > 1:
        raise DataError(
            [
                Problem(
                    found[0].name,
                    None,
                    None,
                    f"both {found[0].name} and {found[1].name} exist; keep one",
                )
            ]
        )
    if not found:
        if required:
            raise DataError(
                [
                    Problem(
                        f"{stem}.csv",
                        None,
                        None,
                        f"missing from the study directory {str(directory)!r}",
                    )
                ]
            )
        return None
    return found[0]


def _rows(mask) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask))


def _report(
    problems: list[Problem], file: str, mask, column: str | None, message, rows=None
) -> None:
    """Add one problem per failing row (capped), then a count of the rest.

    ``rows`` maps positions to the 1-based row numbers of the original file (streamed
    partitions carry them); by default position i is row i + 1.
    """
    failing = _rows(mask)
    for i in failing[:MAX_PROBLEMS_PER_RULE]:
        problems.append(Problem(file, _row_number(rows, int(i)), column, message(int(i))))
    if len(failing) > MAX_PROBLEMS_PER_RULE:
        first = message(int(failing[0]))
        more = len(failing) - MAX_PROBLEMS_PER_RULE
        problems.append(Problem(file, None, column, f"... {more} more rows like: {first}"))


def _required_columns(df: pd.DataFrame, file: str, columns: list[str]) -> list[Problem]:
    return [
        Problem(file, None, c, "required column is missing") for c in columns if c not in df.columns
    ]


PATIENTS_SCHEMA = pa.DataFrameSchema(
    {
        "patient_id": pa.Column(str, nullable=False),
        "sex": pa.Column(
            object, pa.Check.isin(["F", "M"], error="must be 'F' or 'M'"), nullable=False
        ),
        "age_years": pa.Column(
            float, pa.Check.in_range(0, 120, error="outside 0-120 years"), nullable=False
        ),
        "dose_per_infusion": pa.Column(
            float,
            pa.Check.in_range(1e6, 1e10, error="outside 1e6-1e10 cells"),
            nullable=True,
            required=False,
        ),
        "n_infusions": pa.Column(
            float,
            pa.Check.isin(list(range(0, 21)), error="must be a whole number 0-20"),
            nullable=True,
            required=False,
        ),
        "interval_days": pa.Column(
            float,
            pa.Check.in_range(0, 365, error="outside 0-365 days"),
            nullable=True,
            required=False,
        ),
    },
    strict=False,
)


#: Columns the ``patients`` table must have.
PATIENT_COLUMNS = ["patient_id", "sex", "age_years"]


def validate_patients(df: pd.DataFrame, file: str) -> pd.DataFrame:
    """Validate a frame in the ``patients`` form (``_row``, if present, numbers its rows)."""
    problems = _required_columns(df, file, PATIENT_COLUMNS)
    if problems:
        raise DataError(problems)
    df = df.reset_index(drop=True)
    rows = pop_row_numbers(df)
    report = functools.partial(_report, problems, file, rows=rows)
    missing_id = df["patient_id"].isna()
    df["patient_id"] = df["patient_id"].astype(str).where(~missing_id, None)
    numeric_cols = [
        c for c in ("age_years", "dose_per_infusion", "n_infusions", "interval_days") if c in df
    ]
    df, numeric_errors = numeric_problems(df, numeric_cols, file, rows)
    problems += numeric_errors
    df[numeric_cols] = df[numeric_cols].astype(float)
    report(missing_id, "patient_id", lambda i: "patient_id is missing")
    dup = df["patient_id"].duplicated(keep="first") & ~missing_id
    report(
        dup,
        "patient_id",
        lambda i: f"duplicate patient_id {_py(df['patient_id'].iloc[i])!r}",
    )
    # pandera copies what it validates: give it only the columns it checks
    checked = df[[c for c in PATIENTS_SCHEMA.columns if c in df.columns]].copy()
    checked["patient_id"] = checked["patient_id"].fillna("")
    problems += schema_problems(PATIENTS_SCHEMA, checked, file, rows=rows)
    if problems:
        raise DataError(problems)
    return df


#: Columns of the long-format labs table.
LAB_COLUMNS = ["patient_id", "day", "test", "value", "unit"]
#: Study days accepted in labs (ten years either side of the first infusion).
DAY_RANGE = (-3650, 3650)


def _as_category(s: pd.Series) -> pd.Series:
    """Categorical with string categories (IDs and names read as numbers become strings)."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("category")
    if len(s.cat.categories) and not pd.api.types.is_string_dtype(s.cat.categories.dtype):
        s = s.cat.rename_categories(s.cat.categories.astype(str))
    return s


def patient_index(ids: pd.Series, patient_ids: pd.Series) -> np.ndarray:
    """Row of ``patient_ids`` for each id (-1 where unknown), through the categories only."""
    ids = _as_category(ids)
    lookup = pd.Index(patient_ids).get_indexer(ids.cat.categories)
    codes = ids.cat.codes.to_numpy()
    return np.where(codes >= 0, lookup[codes], -1).astype(np.int64)


def _float_column(
    s: pd.Series, column: str, file: str, rows, problems: list[Problem]
) -> np.ndarray:
    """``s`` as float64 (no copy when it already is), non-numbers reported and set to NaN."""
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float)
    numeric, errors = numeric_problems(s.to_frame(column), [column], file, rows)
    problems += errors
    return numeric[column].to_numpy(dtype=float)


def validate_labs(
    raw: pd.DataFrame, patients: pd.DataFrame, file: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Validate and convert a frame in the long ``labs`` form (see :func:`load_study`).

    Millions of rows go through here, so every rule is one vectorised pass over numpy
    arrays and no frame is copied.
    """
    problems = _required_columns(raw, file, LAB_COLUMNS)
    if problems:
        raise DataError(problems)
    source_rows = row_numbers(raw)
    report = functools.partial(_report, problems, file, rows=source_rows)
    pid, test, unit = (_as_category(raw[c]) for c in ("patient_id", "test", "unit"))
    for name, series in zip(LAB_COLUMNS, (pid, raw["day"], test, raw["value"], unit), strict=True):
        report(series.isna().to_numpy(), name, lambda i, name=name: f"{name} is missing")
    day_f = _float_column(raw["day"], "day", file, source_rows, problems)
    value_raw = _float_column(raw["value"], "value", file, source_rows, problems)
    lo, hi = DAY_RANGE
    report((day_f < lo) | (day_f > hi), "day",
           lambda i: f"value {_py(day_f[i])!r} outside {lo}..{hi} days")  # fmt: skip
    whole_day = ~np.isnan(day_f) & (day_f != np.floor(day_f))
    report(whole_day, "day", lambda i: f"day {_py(day_f[i])!r} is not a whole number")

    # patients in labs but not in patients
    pidx = patient_index(pid, patients["patient_id"])
    unknown = (pidx < 0) & pid.notna().to_numpy()
    if unknown.any():  # one problem per unknown id, at its first row
        first_unknown = unknown & ~pid.where(unknown).duplicated().to_numpy()
        report(first_unknown, "patient_id",
               lambda i: f"patient_id {_py(pid.iloc[i])!r} is not in the patients table")  # fmt: skip

    factors = units.factors_for(test, unit)
    known = test.isin(units.KNOWN_TESTS).to_numpy()
    bad_unit = known & np.isnan(factors) & unit.notna().to_numpy()
    report(bad_unit, "unit", lambda i: (
        f"unknown unit {_py(unit.iloc[i])!r} for test {_py(test.iloc[i])!r}; accepted: {units.accepted_units(test.iloc[i])}"
    ))  # fmt: skip

    # one unit per test the project does not know (it cannot convert them)
    lab_units: dict[str, str] = {t: u for t, u in units.CANONICAL_UNITS.items()}
    other = ~known & test.notna().to_numpy() & unit.notna().to_numpy()
    if other.any():
        tc, uc = test.cat.codes.to_numpy(), unit.cat.codes.to_numpy()
        rows = np.flatnonzero(other)
        first_rows = rows[np.unique(tc[rows], return_index=True)[1]]  # first row of each test
        first_unit = np.full(len(test.cat.categories), -1)
        first_unit[tc[first_rows]] = uc[first_rows]
        lab_units.update(
            {str(test.cat.categories[tc[i]]): str(unit.cat.categories[uc[i]]) for i in first_rows}
        )
        mask = np.zeros(len(day_f), dtype=bool)
        mask[rows] = uc[rows] != first_unit[tc[rows]]
        report(mask, "unit", lambda i: (
            f"test {_py(test.iloc[i])!r} changes unit from {lab_units[test.iloc[i]]!r} to {_py(unit.iloc[i])!r}; "
            "use one unit per test"
        ))  # fmt: skip

    value = value_raw * np.where(np.isnan(factors), 1.0, factors)
    # plausible range of every row through its test's code: one pass, not one per test
    cats = [str(c) for c in test.cat.categories]
    low = np.array([units.PLAUSIBLE_RANGES.get(c, (-np.inf, np.inf))[0] for c in cats] + [-np.inf])
    high = np.array([units.PLAUSIBLE_RANGES.get(c, (-np.inf, np.inf))[1] for c in cats] + [np.inf])
    whole = np.array([c in units.INTEGER_TESTS for c in cats] + [False])
    tc = test.cat.codes.to_numpy()  # -1 (missing) indexes the open-ended last entry
    lo_r, hi_r = low[tc], high[tc]
    with np.errstate(invalid="ignore"):
        implausible = (value < lo_r) | (value > hi_r) | (whole[tc] & (value != np.floor(value)))
    implausible &= ~bad_unit
    for code in np.unique(tc[implausible]):
        t = cats[code]
        low_t, high_t = units.PLAUSIBLE_RANGES[t]
        if t in units.INTEGER_TESTS:
            expected = f"a whole {units.CANONICAL_UNITS[t]} {int(low_t)}-{int(high_t)}"
        else:
            expected = f"within {low_t:g}-{high_t:g} {units.CANONICAL_UNITS[t]}"
        report(implausible & (tc == code), "value", lambda i, t=t, expected=expected: (
            f"{t} value {_py(value_raw[i])!r} {unit.iloc[i]} is not plausible (expected {expected})"
            + (unit_hint(t, float(value_raw[i]), str(unit.iloc[i])) if t not in units.INTEGER_TESTS else "")
        ))  # fmt: skip

    if problems:
        problems.sort(key=lambda p: (p.row is None, p.row or 0))
        raise DataError(problems)

    # int32 days (validated within +/-3650): pandas then keeps pidx and day in separate
    # blocks instead of copying them into one
    labs = pd.DataFrame(
        {"pidx": pidx, "day": day_f.astype(np.int32), "test": test.array, "value": value}
    )
    labs = _drop_duplicate_measurements(labs, file, source_rows)
    return labs, lab_units


def _drop_duplicate_measurements(labs: pd.DataFrame, file: str, row_numbers=None) -> pd.DataFrame:
    """Identical repeats of (patient, day, test) are dropped; conflicting ones are errors."""
    n_tests = max(len(labs["test"].cat.categories), 1)
    day = labs["day"].to_numpy()
    # one int64 key per (patient, day, test); days are validated to lie in -3650..3650
    key = (labs["pidx"].to_numpy() * 7301 + (day + 3650)) * n_tests + labs[
        "test"
    ].cat.codes.to_numpy()
    order = None if np.all(key[1:] >= key[:-1]) else np.argsort(key, kind="stable")
    k = key if order is None else key[order]
    v = labs["value"].to_numpy() if order is None else labs["value"].to_numpy()[order]
    same_key = k[1:] == k[:-1]
    if not same_key.any():
        return labs
    conflict = same_key & ~np.isclose(v[1:], v[:-1], rtol=1e-9, atol=1e-12)
    if conflict.any():
        rows = np.flatnonzero(conflict) + 1
        rows = rows if order is None else order[rows]
        problems = []
        for i in np.sort(rows)[:MAX_PROBLEMS_PER_RULE]:
            r = labs.loc[int(i)]
            problems.append(Problem(file, _row_number(row_numbers, int(i)), "value",
                                    f"conflicting duplicate of test {r['test']!r} on day {int(r['day'])} "
                                    "for the same patient (values differ)"))  # fmt: skip
        if len(rows) > MAX_PROBLEMS_PER_RULE:
            problems.append(
                Problem(file, None, "value", f"... {len(rows)} conflicting duplicate rows in all")
            )
        raise DataError(problems)
    drop = np.flatnonzero(same_key) + 1
    drop = drop if order is None else order[drop]
    keep = np.ones(len(labs), dtype=bool)
    keep[drop] = False
    return labs[keep].reset_index(drop=True)


#: Columns of the ``cells`` table.
CELL_COLUMNS = ["patient_id", "day", "population", "parent", "fraction"]


def _checked_cells(df: pd.DataFrame, patients: pd.DataFrame, file: str) -> pd.DataFrame:
    problems = _required_columns(df, file, CELL_COLUMNS)
    if problems:
        raise DataError(problems)
    return validate_cells(df, patients, file, row_numbers(df))


def validate_cells(df: pd.DataFrame, patients: pd.DataFrame, file: str, rows=None) -> pd.DataFrame:
    """Validate a frame in the ``cells`` form; returns it with ``pidx``."""
    df = df[CELL_COLUMNS].reset_index(drop=True)
    df, problems = numeric_problems(df, ["day", "fraction"], file, rows)
    report = functools.partial(_report, problems, file, rows=rows)
    for col in ("patient_id", "population", "parent", "day", "fraction"):
        report(df[col].isna(), col, lambda i, col=col: f"{col} is missing")
    f = df["fraction"]
    report((f < 0) | (f > 1), "fraction",
            lambda i: f"fraction {_py(f.iloc[i])!r} is outside 0-1" + ("; looks like a percentage" if 1 < f.iloc[i] <= 100 else ""))  # fmt: skip
    pid = _as_category(df["patient_id"])
    pidx = patient_index(pid, patients["patient_id"])
    unknown = (pidx < 0) & ~pid.duplicated().to_numpy()
    report(
        unknown,
        "patient_id",
        lambda i: f"patient_id {_py(pid.iloc[i])!r} is not in the patients table",
    )
    population = _as_category(df["population"])
    day = df["day"].to_numpy(dtype=float)
    key = pd.DataFrame({"pidx": pidx, "day": day, "population": population.cat.codes.to_numpy()})
    same_key = key.duplicated(keep=False).to_numpy()
    if same_key.any():  # rare: only then compare the fractions too
        same_value = key.assign(fraction=df["fraction"].to_numpy()).duplicated(keep=False)
        report(same_key & ~same_value.to_numpy(), "fraction",
               lambda i: "conflicting duplicate of (patient, day, population)")  # fmt: skip
    if problems:
        raise DataError(problems)
    out = pd.DataFrame(
        {
            "pidx": pidx,
            "day": day.astype(np.int32),
            "population": population.astype(str).to_numpy(),
            "parent": df["parent"].astype(str).to_numpy(),
            "fraction": df["fraction"].to_numpy(dtype=float),
        }
    )
    if same_key.any():
        out = out.drop_duplicates(["pidx", "day", "population"]).reset_index(drop=True)
    return out


def study_files(directory: str | Path) -> dict[str, Path]:
    """The tables of a study directory: patients, labs, and cells (CSV/Parquet) or ``cells.h5ad``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError([Problem(str(directory), None, None, "study directory not found")])
    files = {
        "patients": find_table(directory, "patients", required=True),
        "labs": find_table(directory, "labs", required=True),
    }
    cells = find_table(directory, "cells", required=False)
    if cells is not None:
        files["cells"] = cells
    elif (directory / "cells.h5ad").exists():
        files["cells"] = directory / "cells.h5ad"
    return files


def load_study(directory: str | Path, singlecell=None) -> Study:
    """Read and validate a study directory (see the README's data contract).

    Parameters
    ----------
    directory : path
        Holds ``patients`` and ``labs`` (CSV or Parquet) and optionally ``cells`` or
        ``cells.h5ad``.
    singlecell : SingleCell config, optional
        How to derive MX1+ monocyte fractions from ``cells.h5ad``.
    """
    files = study_files(directory)
    patients = read_input_table(files["patients"])
    labs = read_input_table(files["labs"], categorical=("patient_id", "test", "unit"))
    cells, derived = None, False
    if "cells" in files and files["cells"].suffix == ".h5ad":
        from .singlecell import mx1_monocyte_fractions

        cells, derived = mx1_monocyte_fractions(files["cells"], singlecell), True
    elif "cells" in files:
        cells = read_input_table(files["cells"])
    return study_from_frames(patients, labs, cells, files, cells_derived=derived)


def study_from_frames(
    patients: pd.DataFrame,
    labs: pd.DataFrame,
    cells: pd.DataFrame | None,
    files: dict[str, Path],
    *,
    cells_derived: bool = False,
) -> Study:
    """Validate the tables of a study (or of a streamed part of one) into a :class:`Study`.

    ``files`` are the source files; messages name them. Frames may carry ``_row``, the
    1-based row of the original file, which messages then name. Problems of the labs and
    cells files are raised together; a broken patients table is raised alone (the others
    cannot be checked against it).
    """

    def name(table: str) -> str:
        return files[table].name

    patients = validate_patients(patients, name("patients"))
    problems: list[Problem] = []
    lab_units: dict[str, str] = {}
    try:
        labs, lab_units = validate_labs(labs, patients, name("labs"))
    except DataError as err:
        problems += err.problems
    if cells is not None:
        try:
            cells = _checked_cells(cells, patients, name("cells"))
        except DataError as err:
            problems += err.problems
    if problems:
        raise DataError(problems)
    return Study(patients, labs, cells, lab_units, files, cells_derived)
