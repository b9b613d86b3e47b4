"""The per-visit table of ``msc-response scores``: one row per visit, score inputs as columns.

Score inputs are read in canonical units or under SI headers (``bilirubin_umol_L``);
every other column passes through exactly as read: a CSV's cells are text and stay text
(``007`` stays ``007``), a Parquet file's columns keep their types. Headers are matched
exactly; a table where no score input is found, a header that is a score input in
another case, a column named twice, an empty file or text that is not UTF-8 (without
an explicit encoding) are structural problems. Problems are collected with row and
column and raised together as one :class:`~msc_response.errors.DataError`.
"""

from __future__ import annotations

import codecs
import difflib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import plausible, units
from ..errors import ConfigError, DataError, Problem
from ..io import table_format
from .files import csv_error_text
from .pandera_pandas import pa
from .problems import py, unit_hint
from .tables import MISSING_TEXTS

#: Cell texts read as missing in a score input (pyarrow's CSV defaults: "", NA, NaN, null, ...).
_MISSING = frozenset(MISSING_TEXTS.to_pylist())
#: Parquet integers become pandas' nullable integers: a missing value does not turn 7 into 7.0.
_NULLABLE_INT = {
    pyarrow.int8(): pd.Int8Dtype(), pyarrow.int16(): pd.Int16Dtype(),
    pyarrow.int32(): pd.Int32Dtype(), pyarrow.int64(): pd.Int64Dtype(),
    pyarrow.uint8(): pd.UInt8Dtype(), pyarrow.uint16(): pd.UInt16Dtype(),
    pyarrow.uint32(): pd.UInt32Dtype(), pyarrow.uint64(): pd.UInt64Dtype(),
}  # fmt: skip


def _range_check(test: str) -> pa.Check:
    """The plausible values of ``test`` as a pandera check; its message says what was expected."""
    low, high = plausible.RANGES[test]
    message = f"is not plausible (expected {plausible.expected(test)})"
    if test in plausible.WHOLE_NUMBER_TESTS:
        return pa.Check.isin(list(range(int(low), int(high) + 1)), error=message)
    return pa.Check.in_range(low, high, error=message)


def schema_problems(
    schema: pa.DataFrameSchema,
    df: pd.DataFrame,
    file: str,
    rename: dict[str, str] | None = None,
    hint=None,
    written=None,
) -> list[Problem]:
    """Run ``schema`` lazily on ``df`` and turn its failure cases into problems.

    ``rename`` maps a validated column back to the column name the user wrote
    (e.g. ``bilirubin`` -> ``bilirubin_umol_L``) so messages name what is in the file.
    ``hint(column, row_index)`` may return extra text for a failing cell;
    ``written(written_column, row_index)`` the value of a renamed column as written, with
    its unit (the check saw it converted).
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
                shown = f"{py(value)!r}"
                if written is not None and row is not None and column != str(case.column):
                    # the value as the user wrote it, then what the check compared
                    shown = f"{written(column, int(index))} (= {value:.4g} {units.CANONICAL_UNITS[str(case.column)]})"  # fmt: skip
                message = f"value {shown} {case.check}" if row is not None else str(case.check)
                if hint is not None and row is not None:
                    message += hint(str(case.column), int(index))
            problems.append(Problem(file, row, column, message))
        return problems
    return []


def numeric_problems(
    df: pd.DataFrame, columns: list[str], file: str
) -> tuple[pd.DataFrame, list[Problem]]:
    """``columns`` as float (NaN where missing), reporting every cell that is not a number.

    Text cells that say "missing" (empty, ``NA``, ``NaN``, ``null``, ...) are missing values.
    """
    problems: list[Problem] = []
    out = pd.DataFrame(index=df.index)
    for col in columns:
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            out[col] = raw.to_numpy(dtype=float, na_value=np.nan)
            continue
        text = raw.astype(object).where(raw.notna(), None)
        missing = text.map(lambda v: v is None or str(v).strip() in _MISSING).to_numpy(dtype=bool)
        as_num = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype=float)
        for idx in np.flatnonzero(np.isnan(as_num) & ~missing):
            problems.append(
                Problem(file, int(idx) + 1, col, f"value {py(raw.iloc[idx])!r} is not a number")
            )
        out[col] = as_num
    return out, problems


def _text(values: pd.Series) -> pd.Series:
    """A text column with its missing cells (empty, ``NA``, ...) as None."""
    text = values.astype(object).where(values.notna(), None)
    return text.map(lambda v: None if v is None or str(v).strip() in _MISSING else v)


def _read_csv(path: Path, encoding: str | None) -> pd.DataFrame:
    """Every column of a CSV as text, exactly as written (no number or missing-value parsing)."""
    read = pacsv.ReadOptions(encoding=encoding or "utf8")
    try:
        names = pacsv.open_csv(path, read_options=read).schema.names  # the header
        check_header(names, path.name)
        as_text = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pyarrow.string()), strings_can_be_null=False
        )
        table = pacsv.read_csv(path, read_options=read, convert_options=as_text)
    except (pyarrow.ArrowInvalid, UnicodeDecodeError) as err:
        raise DataError(
            [Problem(path.name, None, None, _csv_problem(path, encoding, err))]
        ) from None
    return table.to_pandas()


def _csv_problem(path: Path, encoding: str | None, err: Exception) -> str:
    """What is wrong with a CSV that pyarrow cannot read, in the user's terms."""
    data = path.read_bytes()
    if not data:
        return "the file is empty (0 bytes)"
    if encoding is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            line = data.count(b"\n", 0, bad.start) + 1
            return (
                f"not UTF-8 text: byte 0x{data[bad.start]:02x} at byte offset {bad.start} "
                f"(line {line}); give the file's encoding with --encoding (e.g. latin-1, cp1252)"
            )
    message = csv_error_text(err, path)
    header = data.split(b"\n", 1)[0]
    delimiter = next((d for d in (";", "\t", "|") if d.encode() in header), None)
    if delimiter and b"," not in header:
        message += (
            f" (the header is separated by {delimiter!r}; columns must be separated by commas)"
        )
    return f"cannot read the file: {message}"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pyarrow.ArrowInvalid) as err:
        raise DataError([Problem(path.name, None, None, f"cannot read the file: {err}")]) from None
    check_header(table.column_names, path.name)
    return table.to_pandas(types_mapper=_NULLABLE_INT.get)


def read_input_table(path: Path, encoding: str | None = None) -> pd.DataFrame:
    """A visit table as written: CSV cells as text, Parquet columns in their types.

    Raises
    ------
    DataError
        The file is missing, empty, unreadable, not UTF-8 (CSV without ``encoding``), has
        no rows, or its header is unusable (see :func:`check_header`).
    ConfigError
        ``encoding`` is unknown, or given for a Parquet file.
    """
    try:
        fmt = table_format(path)
    except ValueError as err:
        raise DataError([Problem(path.name, None, None, str(err))]) from None
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"encoding: unknown encoding {encoding!r}") from None
        if fmt == "parquet":
            raise ConfigError(
                f"encoding: applies to CSV files; {path.name!r} is Parquet (its text is UTF-8)"
            )
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "file not found"
        raise DataError([Problem(path.name, None, None, f"{what}: {str(path)!r}")])
    df = _read_parquet(path) if fmt == "parquet" else _read_csv(path, encoding)
    if df.empty:
        raise DataError([Problem(path.name, None, None, "no rows: the file holds a header only")])
    return df


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


#: Columns read for the scores (one of the numeric ones must be present).
SCORE_INPUTS = (*VISIT_NUMERIC, *SI_HEADERS, "sex", "etiology")


def check_header(names: list[str], file: str) -> None:
    """Structural problems of a visit table's header; :class:`DataError` with all of them.

    A column named twice; a header that is a score input but for its case or spaces
    (``Bilirubin``: headers are matched exactly, so it would pass through unread and
    every score would be empty); no score input at all (a file delimited by ``;`` reads
    as one column), listing the columns found and the close matches.
    """
    problems = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(Problem(file, None, name, "the column appears more than once"))
        seen.add(name)
    folded = {c.lower(): c for c in SCORE_INPUTS}
    miscased = set()
    for name in names:
        meant = folded.get(name.strip().lower())
        if meant is not None and meant != name and meant not in seen:
            miscased.add(name)
            problems.append(Problem(file, None, name, (
                f"is not read as {meant!r}: headers are matched exactly (rename the column)")))  # fmt: skip
    numeric = [c for c in (*VISIT_NUMERIC, *SI_HEADERS) if c in seen]
    if not numeric:
        shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        hints = []
        for name in (n for n in names if n not in miscased):
            close = difflib.get_close_matches(name.strip().lower(), list(folded), n=1, cutoff=0.75)
            if close and folded[close[0]] != name:
                hints.append(f"{name!r} -> {folded[close[0]]!r}?")
        delimited = [d for d in (";", "\t", "|") if len(names) == 1 and d in names[0]]
        if delimited:
            hints.append(
                f"the header is separated by {delimited[0]!r}: columns must be separated by commas"
            )
        problems.append(Problem(file, None, None, (
            f"no score input column found (expected some of {list(VISIT_NUMERIC + list(SI_HEADERS))}); "
            f"the columns read are [{shown}]" + (f"; {'; '.join(hints)}" if hints else ""))))  # fmt: skip
    if problems:
        raise DataError(problems)


def read_visit_table(
    path: str | Path, encoding: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and validate a per-visit table for ``msc-response scores``.

    Parameters
    ----------
    encoding : str, optional
        The text encoding of a CSV file (default: UTF-8, and anything else is an error
        naming the byte offset).

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
    df = read_input_table(path, encoding)
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
            work[col] = numeric[col]
    for col in ("sex", "etiology"):
        if col in df.columns:
            work[col] = _text(df[col])

    def hint(column: str, index: int) -> str:
        if column not in ("bilirubin", "albumin", "creatinine"):
            return ""
        original = rename.get(column, column)
        unit = SI_HEADERS[original][1] if original in SI_HEADERS else units.CANONICAL_UNITS[column]
        return unit_hint(column, float(numeric[original].loc[index]), unit)

    def as_written(original: str, index: int) -> str:
        return f"{py(numeric[original].loc[index])!r} {SI_HEADERS[original][1]}"

    problems += schema_problems(VISIT_SCHEMA, work, file, rename, hint, as_written)
    problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    if problems:
        raise DataError(problems)
    for col in VISIT_NUMERIC:
        if col not in work.columns:
            work[col] = np.nan
    return work
