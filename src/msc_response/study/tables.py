"""The tables of a study and their declared column types: the one place that says them.

Every reader path (a whole study, grouped chunks, hash partitions, Parquet row ranges,
CSV or Parquet, one file or a directory of part files) passes its rows through
:func:`normalise`, so a table means the same whatever its format:

* ``patient_id`` is the string exactly as written: CSV cells are read as text (``001``
  stays ``001``, ``NA`` is an id like any other), Parquet integers become their decimal
  digits; floating-point ids are refused (``2.0`` is not an id).
* Numeric columns are float64. Text that is not a number is kept beside the column as
  ``_text_<column>`` (null elsewhere), so the validators can report it with its row.
* Dates in a ``day`` column are refused: days are whole numbers of days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import DataError, Problem


@dataclass(frozen=True)
class TableSpec:
    """The declared columns of one table of the data contract."""

    name: str
    required: tuple[str, ...]
    numeric: tuple[str, ...]
    text: tuple[str, ...]
    dictionary: bool  # many rows per patient: repeated strings dictionary-encoded


TABLES: dict[str, TableSpec] = {
    "patients": TableSpec(
        "patients",
        required=("patient_id", "sex", "age_years"),
        numeric=("age_years", "dose_per_infusion", "n_infusions", "interval_days"),
        text=("patient_id", "sex", "etiology", "arm"),
        dictionary=False,
    ),
    "labs": TableSpec(
        "labs",
        required=("patient_id", "day", "test", "value", "unit"),
        numeric=("day", "value"),
        text=("patient_id", "test", "unit"),
        dictionary=True,
    ),
    "cells": TableSpec(
        "cells",
        required=("patient_id", "day", "population", "parent", "fraction"),
        numeric=("day", "fraction"),
        text=("patient_id", "population", "parent"),
        dictionary=True,
    ),
}

#: Prefix of the column that keeps the text of cells that are not numbers.
TEXT_PREFIX = "_text_"

#: Cell texts read as missing in numeric columns (pyarrow's CSV defaults).
MISSING_TEXTS = pa.array(pacsv.ConvertOptions().null_values, pa.string())


def csv_convert_options(table: str) -> pacsv.ConvertOptions:
    """Every declared column read as text (no guessing, no empty-string-to-null for ids)."""
    spec = TABLES[table]
    types = {c: pa.string() for c in (*spec.text, *spec.numeric)}
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)


def check_columns(names: list[str], table: str, file: str) -> None:
    """Structural checks of a header: required columns present, no column named twice."""
    problems = [Problem(file, None, c, "required column is missing")
                for c in TABLES[table].required if c not in names]  # fmt: skip
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(Problem(file, None, name, "the column appears more than once"))
        seen.add(name)
    if problems:
        raise DataError(problems)


def normalise(table: str, t: pa.Table, file: str) -> pa.Table:
    """Declared types for the rows of ``table`` (see the module docs)."""
    spec = TABLES[table]
    columns, names = [], []
    for name, col in zip(t.column_names, t.columns, strict=True):
        if name in spec.numeric:
            values, text = _as_float(col, name, file)
            columns.append(values)
            names.append(name)
            if text is not None:
                columns.append(text)
                names.append(TEXT_PREFIX + name)
            continue
        if name in spec.text:
            if spec.dictionary and _is_text_dictionary(col.type):
                col = col.cast(pa.dictionary(col.type.index_type, pa.string()))  # codes kept
            else:
                col = _as_text(col, name, file, is_id=name == "patient_id")
                if spec.dictionary:
                    col = pc.dictionary_encode(col)
        columns.append(col)
        names.append(name)
    return pa.Table.from_arrays(columns, names=names)


def _is_text_dictionary(kind: pa.DataType) -> bool:
    """Dictionary-encoded text (as Parquet keeps repeated strings): used as it is, without
    expanding every row's string (see :func:`coded` for the categories it means)."""
    return pa.types.is_dictionary(kind) and (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    )


def coded(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, categories)`` of a text column: int64 codes (-1 where missing) into the
    distinct values in order of first appearance (each once; values no row uses are not
    categories) - what ``pd.Categorical`` of the rows' strings would hold, found from the
    dictionary's codes (hashing integers, not strings, when the column is a dictionary)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.unify_dictionaries() if pa.types.is_dictionary(col.type) else col
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    if len(col) == 0:
        return np.zeros(0, dtype=np.int64), np.array([], dtype=object)
    start = _in_order_of_first_appearance(col.indices)
    if start is not None:  # the rows use a run of the dictionary, each new value the next
        indices = col.indices.to_numpy()
        rows = indices.astype(np.int64) - start
        values = col.dictionary.slice(start, int(indices.max()) + 1 - start)
    else:  # dictionary codes in order of first appearance, by hashing them
        used = pc.dictionary_encode(col.indices)
        values = col.dictionary.take(used.dictionary)
        rows = used.indices if used.indices.null_count == 0 else pc.fill_null(used.indices, -1)
        rows = rows.to_numpy().astype(np.int64)
    values = values.to_numpy(zero_copy_only=False)
    # a dictionary may repeat a value or hold a null: one category per distinct string
    value_codes, categories = pd.factorize(values.astype(object))
    if not np.array_equal(value_codes, np.arange(len(values))):  # a repeated or null value
        rows = np.append(value_codes, -1)[rows]  # -1 (missing) picks the appended -1
    return rows, np.asarray(categories, dtype=object)


def _in_order_of_first_appearance(indices: pa.Array) -> int | None:
    """The first dictionary index when every row's index is at most one above the largest
    before it (so the rows use indices ``start..max`` in order of first appearance, as Arrow
    and Parquet build dictionaries, also in a slice of a row group); None otherwise."""
    if indices.null_count or len(indices) == 0:
        return None
    codes = indices.to_numpy()
    start = int(codes[0])
    largest = np.maximum.accumulate(codes)
    if int(codes.min()) < start or bool((codes[1:] > largest[:-1] + 1).any()):
        return None
    return start


def categorical(col: pa.ChunkedArray | pa.Array) -> pd.Categorical:
    """A text column as ``pd.Categorical`` with the categories of :func:`coded`."""
    codes, categories = coded(col)
    return pd.Categorical.from_codes(
        codes, categories=pd.Index(categories, dtype=object), validate=False
    )


def to_frame(t: pa.Table) -> pd.DataFrame:
    """A normalised table as pandas: dictionary columns as :func:`categorical`, the rest as
    ``Table.to_pandas`` gives them."""
    dictionaries = [n for n, c in zip(t.column_names, t.columns, strict=True)
                    if pa.types.is_dictionary(c.type)]  # fmt: skip
    frame = t.drop_columns(dictionaries).to_pandas()
    if len(frame) != t.num_rows:  # no column left to carry the length
        frame = pd.DataFrame(index=pd.RangeIndex(t.num_rows))
    for name in dictionaries:  # inserted in place: no copy of the other columns' blocks
        frame.insert(t.column_names.index(name), name, categorical(t.column(name)))
    return frame


def _as_text(col: pa.ChunkedArray, name: str, file: str, *, is_id: bool) -> pa.ChunkedArray:
    kind = col.type
    if pa.types.is_dictionary(kind):
        col, kind = col.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return col.cast(pa.string())
    if pa.types.is_integer(kind) or pa.types.is_null(kind) or not is_id:
        return col.cast(pa.string())  # an integer id's digits are what was written
    raise DataError([Problem(file, None, name, (
        f"{name} is stored as {kind} values; ids must be text (or whole numbers), "
        "exactly as the site writes them"))])  # fmt: skip


def _as_float(col: pa.ChunkedArray, name: str, file: str):
    """``(float64 values, text of the cells that are not numbers or None)``."""
    kind = col.type
    if pa.types.is_dictionary(kind):
        col, kind = col.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return col.cast(pa.float64()), None
    if pa.types.is_null(kind):
        return col.cast(pa.float64()), None
    if pa.types.is_temporal(kind):
        raise DataError([Problem(file, None, name, (
            f"holds {kind} values; {name} must be a whole number of days from the first "
            "infusion, not a date"))])  # fmt: skip
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError([Problem(file, None, name, f"holds {kind} values; expected numbers")])
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    missing = pc.or_kleene(pc.is_null(text), pc.is_in(text, value_set=MISSING_TEXTS))
    numbers = pc.if_else(missing, pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(numbers, pa.float64()), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # some cell is not a number: find which, row by row (rare)
    parsed = pd.to_numeric(numbers.to_pandas(), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(parsed) & ~missing.to_numpy(zero_copy_only=False)
    raw = pa.array(np.where(bad, col.to_pandas().astype(object), None), pa.string())
    return pa.chunked_array([pa.array(parsed)]), pa.chunked_array([raw])
