"""The per-visit table of ``msc-response scores``: one row per visit, score inputs as columns.

Score inputs are read in canonical units or under SI headers (``bilirubin_umol_L``);
every other column passes through. Problems are collected with row and column and
raised together as one :class:`~msc_response.errors.DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from . import units
from .errors import DataError, Problem
from .io import read_table
from .study.problems import py, unit_hint


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
            row = None if index is None or pd.isna(index) else int(index) + 1
            if case.column is None or pd.isna(case.column):  # a whole-frame check
                column, message = None, f"{case.check}: {case.failure_case!r}"
                if case.check == "column_in_dataframe":
                    column, message = str(case.failure_case), "required column is missing"
            else:
                column = rename.get(str(case.column), str(case.column))
                value = case.failure_case
                message = (
                    f"value {py(value)!r} {case.check}" if row is not None else str(case.check)
                )
                if hint is not None and row is not None:
                    message += hint(str(case.column), int(index))
            problems.append(Problem(file, row, column, message))
        return problems
    return []


def numeric_problems(
    df: pd.DataFrame, columns: list[str], file: str
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
        for idx in np.flatnonzero(bad.to_numpy()):
            problems.append(
                Problem(
                    file,
                    int(idx) + 1,
                    col,
                    f"value {py(raw.iloc[idx])!r} is not a number",
                )
            )
        out[col] = as_num
    return out, problems


def read_input_table(path: Path, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet input, turning unreadable files into a :class:`DataError`."""
    try:
        return read_table(path, categorical)
    except FileNotFoundError as err:
        raise DataError([Problem(path.name, None, None, f"file not found: {str(path)!r}")]) from err
    except (OSError, ValueError) as err:  # pyarrow's parse errors are ValueError subclasses
        raise DataError([Problem(path.name, None, None, f"cannot read the file: {err}")]) from err


#: Columns of the per-visit score table in canonical units.
VISIT_NUMERIC = [
    "bilirubin", "albumin", "inr", "creatinine", "sodium",
    "ascites", "encephalopathy", "dialysis", "pt", "pt_control",
]  # fmt: skip

#: SI-unit headers accepted instead of the canonical column.
SI_HEADERS = {
    "bilirubin_umol_L": ("bilirubin", "umol/L"),
    "creatinine_umol_L": ("creatinine", "umol/L"),
    "albumin_g_L": ("albumin", "g/L"),
}

VISIT_SCHEMA = pa.DataFrameSchema(
    {
        **{
            c: pa.Column(float, _range_check(c), nullable=True, required=False)
            for c in VISIT_NUMERIC
        },
        "sex": pa.Column(
            object,
            pa.Check.isin(["F", "M"], error="must be 'F' or 'M'"),
            nullable=True,
            required=False,
        ),
    },
    strict=False,
)


def read_visit_table(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate a per-visit table for ``msc-response scores``.

    Returns
    -------
    raw : DataFrame
        The file as read (its columns pass through to the output unchanged).
    canonical : DataFrame
        The score inputs in canonical units (see :func:`canonical_visits`).

    Raises
    ------
    DataError
        With every problem found (row and column named).
    """
    path = Path(path)
    df = read_input_table(path)
    return df, canonical_visits(df, path.name)


def canonical_visits(df: pd.DataFrame, file: str) -> pd.DataFrame:
    """The score inputs of a visit table in canonical units, validated.

    Returns a frame with the columns of :data:`VISIT_NUMERIC` (float, NaN where absent)
    plus ``sex`` and ``etiology`` when given.
    """
    problems: list[Problem] = []
    rename: dict[str, str] = {}
    work = pd.DataFrame(index=df.index)
    for si, (col, _unit) in SI_HEADERS.items():
        if si in df.columns and col in df.columns:
            problems.append(Problem(file, None, si, f"both {col!r} and {si!r} are given; keep one"))
    present = [c for c in VISIT_NUMERIC if c in df.columns] + [
        s for s in SI_HEADERS if s in df.columns
    ]
    numeric, problems_num = numeric_problems(df[present], present, file)
    problems += problems_num
    for col in present:
        if col in SI_HEADERS:
            canon, unit = SI_HEADERS[col]
            work[canon] = units.convert(numeric[col], canon, unit)
            rename[canon] = col
        else:
            work[col] = numeric[col].astype(float)
    for col in ("sex", "etiology"):
        if col in df.columns:
            work[col] = df[col].astype(object).where(df[col].notna(), None)

    def hint(column: str, index: int) -> str:
        if column not in ("bilirubin", "albumin", "creatinine"):
            return ""
        original = rename.get(column, column)
        unit = SI_HEADERS[original][1] if original in SI_HEADERS else units.CANONICAL_UNITS[column]
        return unit_hint(column, float(numeric[original].loc[index]), unit)

    problems += schema_problems(VISIT_SCHEMA, work, file, rename, hint)
    problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    if problems:
        raise DataError(problems)
    for col in VISIT_NUMERIC:
        if col not in work.columns:
            work[col] = np.nan
    return work
