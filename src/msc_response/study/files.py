"""Finding a study's tables and reading their rows as Arrow batches.

A table is ``NAME.csv``, ``NAME.parquet`` or a directory ``NAME/`` (or ``NAME.parquet/``)
of Parquet part files, as Spark and Hive write them (part files in name order; files
starting with ``_`` or ``.`` such as ``_SUCCESS`` are not data). Exactly one of them.
Cell fractions may instead come from single-cell data, ``cells.h5ad``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import DataError, Problem
from .tables import check_columns, csv_convert_options

BATCH_ROWS = 1 << 18
SIMULATION_FILE = "simulation.json"


def _candidates(directory: Path, stem: str) -> list[Path]:
    paths = [directory / f"{stem}.csv", directory / f"{stem}.parquet", directory / stem]
    return [p for p in paths if p.is_file() or (p.is_dir() and p.suffix in ("", ".parquet"))]


def find_table(directory: Path, stem: str, *, required: bool) -> Path | None:
    """The one file or part directory holding table ``stem`` (None if absent and optional)."""
    found = _candidates(directory, stem)
    if len(found) > 1:
        names = " and ".join(p.name + ("/" if p.is_dir() else "") for p in found)
        raise DataError([Problem(found[0].name, None, None, f"{names} both exist; keep one")])
    if not found:
        if required:
            raise DataError([Problem(f"{stem}.csv", None, None,
                                     f"missing from the study directory {str(directory)!r}")])  # fmt: skip
        return None
    return found[0]


def study_files(directory) -> dict[str, Path]:
    """The tables of a study directory: patients, labs, and cells (a table or ``cells.h5ad``).

    ``directory``: a path, or a location with the bit of ``pathlib`` used here (``/``,
    ``is_dir``, ``is_file``, ``name``, ``suffix``: the Spark engine's Hadoop locations).
    """
    if isinstance(directory, str | os.PathLike):
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
    elif (directory / "cells.h5ad").is_file():
        files["cells"] = directory / "cells.h5ad"
    return files


def input_paths(directory: str | Path) -> list[Path]:
    """Every path a study's reader reads or would pick up, existing or not.

    Outputs may be none of them (see :func:`msc_response.io.check_outputs`): writing
    ``labs.parquet`` beside ``labs.csv`` breaks a study as surely as overwriting it.
    """
    directory = Path(directory)
    paths = [
        p for stem in ("patients", "labs", "cells")
        for p in (directory / f"{stem}.csv", directory / f"{stem}.parquet", directory / stem)
    ]  # fmt: skip
    return [*paths, directory / "cells.h5ad", directory / SIMULATION_FILE]


def simulation_flag(directory: str | Path, key: str, *, required: bool = False) -> bool | None:
    """The true/false ``key`` of the study's ``simulation.json`` (None: no such file, or the
    key absent and not ``required``); the one reader of that file. Anything else is a
    DataError naming the file and the key.
    """
    meta = Path(directory) / SIMULATION_FILE
    if not meta.exists():
        return None
    try:
        content = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError([Problem(SIMULATION_FILE, None, None, (
            f"cannot be read ({err}); it marks a study as SIMULATED, so it must be valid JSON "
            "(or be removed from a study of real patients)"))]) from None  # fmt: skip
    value = content.get(key) if isinstance(content, dict) else None
    if not isinstance(content, dict) or not (
        isinstance(value, bool) or (value is None and not required)
    ):
        raise DataError([Problem(SIMULATION_FILE, None, key,
                                 f"must be a JSON object with \"{key}\": true or false, got {value!r}")])  # fmt: skip
    return value


def is_simulated(directory: str | Path) -> bool:
    """True when the simulator wrote the study (its ``simulation.json`` says so).

    A ``simulation.json`` that cannot be read is an error, not real data: the file exists
    to mark simulated data, and losing that mark would let simulated results pass as real.
    """
    return simulation_flag(directory, "simulated", required=True) is True


def display_name(path: Path) -> str:
    """How messages name a table: its file name (a part directory with a slash)."""
    return path.name + ("/" if path.is_dir() else "")


def is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".parquet"


@dataclass(frozen=True)
class ParquetParts:
    """A Parquet table as one file or a directory of part files, read as one sequence of rows."""

    path: str

    @cached_property
    def files(self) -> list[Path]:
        p = Path(self.path)
        if p.is_file():
            return [p]
        parts = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(("_", "."))
                       and not any(d.startswith(("_", ".")) for d in f.relative_to(p).parts[:-1]))  # fmt: skip
        if not parts:
            raise DataError(
                [Problem(display_name(p), None, None, "no Parquet part files in the directory")]
            )
        return parts

    def _open(self, f: Path) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(f)
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError([Problem(display_name(Path(self.path)), None, None,
                                     f"cannot read {f.name}: {err}")]) from None  # fmt: skip

    @cached_property
    def schema(self) -> pa.Schema:
        schemas = [self._open(f).schema_arrow.remove_metadata() for f in self.files]
        for f, s in zip(self.files[1:], schemas[1:], strict=True):
            if s.names != schemas[0].names:
                raise DataError([Problem(display_name(Path(self.path)), None, None,
                                         f"part {f.name} has other columns than {self.files[0].name}")])  # fmt: skip
        return schemas[0]

    @cached_property
    def row_counts(self) -> np.ndarray:
        return np.array([self._open(f).metadata.num_rows for f in self.files], dtype=np.int64)

    def batches(self, columns=None, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        for f in self.files:
            yield from self._open(f).iter_batches(batch_size=batch_rows, columns=columns)

    def read(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Rows ``start`` to ``stop - 1`` (0-based, across the parts)."""
        bounds = np.concatenate([[0], np.cumsum(self.row_counts)])
        stop = int(bounds[-1]) if stop is None else stop
        pieces = []
        for k, f in enumerate(self.files):
            lo, hi = max(start, bounds[k]), min(stop, bounds[k + 1])
            if lo >= hi:
                continue
            pf = self._open(f)
            sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
            rg = np.concatenate([[0], np.cumsum(sizes)]) + bounds[k]
            first = int(np.searchsorted(rg, lo, side="right")) - 1
            last = int(np.searchsorted(rg, hi, side="left"))
            t = pf.read_row_groups(list(range(first, last)))
            pieces.append(t.slice(int(lo - rg[first]), int(hi - lo)).replace_schema_metadata(None))
        if not pieces:
            return self.schema.empty_table()
        return pa.concat_tables(pieces, promote_options="permissive")


def schema(path: Path, table: str) -> pa.Schema:
    """The columns of a table as stored (Parquet footer, or the CSV's header read as text)."""
    if is_parquet(path):
        names = ParquetParts(str(path)).schema
    else:
        try:
            names = pacsv.open_csv(path, convert_options=csv_convert_options(table)).schema
        except (pa.ArrowInvalid, OSError) as err:
            why = f"cannot read the file: {csv_error_text(err, path)}"
            raise DataError([Problem(path.name, None, None, why)]) from None
    check_columns(names.names, table, display_name(path))
    return names


def batches(path: Path, table: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The rows of a table as record batches, as stored (CSV: declared columns as text)."""
    if is_parquet(path):
        yield from ParquetParts(str(path)).batches(batch_rows=batch_rows)
        return
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20),
                                convert_options=csv_convert_options(table))  # fmt: skip
        yield from reader
    except pa.ArrowInvalid as err:
        raise DataError(
            [Problem(path.name, None, None, f"cannot parse: {csv_error_text(err, path)}")]
        ) from None


def read_whole(path: Path, table: str) -> pa.Table:
    """A whole table (multi-threaded CSV reading) with ``_row``, the 1-based row of the file."""
    if is_parquet(path):
        t = ParquetParts(str(path)).read()
    else:
        try:
            t = pacsv.read_csv(path, convert_options=csv_convert_options(table))
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(
                [Problem(path.name, None, None, f"cannot parse: {csv_error_text(err, path)}")]
            ) from None
    return t.append_column("_row", pa.array(np.arange(1, t.num_rows + 1, dtype=np.int64)))


def count_rows(path: Path, table: str) -> int:
    if is_parquet(path):
        return int(ParquetParts(str(path)).row_counts.sum())
    return sum(b.num_rows for b in batches(path, table))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def misshapen_csv_line(path: Path, encoding: str | None = None) -> str | None:
    """Where a CSV's first row with another number of fields than its header is ("line 7 has
    6 fields where the header has 5"), or None. pandas pads a short row with empty cells and,
    reading some columns only, drops a long row's surplus: both without a word."""
    with open(path, newline="", encoding=encoding or "utf-8", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        for fields in rows:
            if fields and header is not None and len(fields) != len(header):  # blank lines skipped
                return f"line {rows.line_num} has {len(fields)} fields where the header has {len(header)}"
    return None


#: pyarrow's "a row has the wrong number of fields", which goes on to quote the whole row
_FIELD_COUNT = re.compile(r"Expected \d+ columns, got \d+")


def csv_error_text(err: Exception, path: Path) -> str:
    """pyarrow's first error line for a CSV it cannot read, for a console line: when a row has
    the wrong number of fields pyarrow quotes that row (a patient's id and values), so the
    quote is replaced by where the row is (:func:`misshapen_csv_line`)."""
    message = _first_line(err)
    found = _FIELD_COUNT.search(message)
    if found is None:
        return message
    return message[: found.start()] + (
        misshapen_csv_line(path) or "a row has another number of fields than the header"
    )
