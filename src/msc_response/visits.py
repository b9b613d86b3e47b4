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
from .dataset import _range_check, numeric_problems, read_input_table, schema_problems, unit_hint
from .errors import DataError, Problem

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
