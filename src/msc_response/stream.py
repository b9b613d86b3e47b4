"""Streaming a study directory in chunks of patients, so scoring memory stays bounded.

Two ways through a study, both yielding :class:`StudyChunk` tables that keep each
row's original 1-based row number in ``_row`` (messages name the row of the file):

- :meth:`StudySource.grouped_chunks`, one sequential pass with nothing written: the
  patients file is cut into runs of ``patients_per_chunk`` rows and each other table
  into the run of rows that belongs to them. This needs the rows of every patient to
  be contiguous and in the patients file's order (as the simulator and most exports
  write them); when they are not, or a patient id repeats, it raises
  :class:`NotGrouped` at the end of the pass - nothing is known to be wrong before.
- :meth:`StudySource.partitioned_chunks`, for any order: every table is routed by a
  stable hash of ``patient_id`` into Parquet partitions on disk, then read back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .dataset import CELL_COLUMNS, LAB_COLUMNS, PATIENT_COLUMNS, study_files
from .errors import DataError, Problem

BATCH_ROWS = 1 << 18
REQUIRED = {"patients": PATIENT_COLUMNS, "labs": LAB_COLUMNS, "cells": CELL_COLUMNS}
NUMERIC = {
    "patients": ("age_years", "dose_per_infusion", "n_infusions", "interval_days"),
    "labs": ("day", "value"),
    "cells": ("day", "fraction"),
}
STRINGS = {
    "patients": ("patient_id", "sex", "etiology", "arm"),
    "labs": ("patient_id", "test", "unit"),
    "cells": ("patient_id", "population", "parent"),
}


class NotGrouped(Exception):
    """The study's rows are not grouped by patient in the patients file's order."""


@dataclass
class StudyChunk:
    """The rows of some patients, from every table (each with ``_row``), or where to read them."""

    patients: pa.Table | RowRange
    labs: pa.Table | RowRange
    cells: pa.Table | RowRange | None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _csv_convert(table: str) -> pacsv.ConvertOptions:
    types = {c: pa.float64() for c in NUMERIC[table]} | {c: pa.string() for c in STRINGS[table]}
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)


def _batches(path: Path, table: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of a CSV or Parquet table; CSV numeric columns parsed as float64."""
    if path.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            convert_options=_csv_convert(table),
        )
        yield from reader
    except pa.ArrowInvalid as err:
        raise _csv_error(path, err) from None


def _csv_error(path: Path, err: pa.ArrowInvalid) -> DataError:
    """A CSV parse error as problems: the rows of a non-numeric column, or the parser's words."""
    text = str(err)
    match = re.search(r"column #(\d+)", text)
    header = pacsv.open_csv(
        path, convert_options=pacsv.ConvertOptions(column_types={})
    ).schema.names
    if match and int(match.group(1)) < len(header):
        problems = _non_numeric_rows(path, header[int(match.group(1))])
        if problems:
            return DataError(problems)
    return DataError([Problem(path.name, None, None, f"cannot parse: {text.splitlines()[0]}")])


def _non_numeric_rows(path: Path, column: str, limit: int = 20) -> list[Problem]:
    """Rows of a CSV column that are not numbers (a second, string-typed pass over that column)."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            include_columns=[column], column_types={column: pa.string()}, strings_can_be_null=True
        ),
    )
    problems, offset = [], 0
    for batch in reader:
        raw = batch.column(0).to_pandas()
        bad = raw.notna() & pd.to_numeric(raw, errors="coerce").isna()
        for i in np.flatnonzero(bad.to_numpy()):
            if len(problems) < limit:
                problems.append(
                    Problem(
                        path.name,
                        offset + int(i) + 1,
                        column,
                        f"value {raw.iloc[i]!r} is not a number",
                    )
                )
        offset += batch.num_rows
    return problems


def _part_of(ids: pa.Array, n_parts: int) -> np.ndarray:
    """Partition of each id: a stable hash of the string, hashed once per distinct id.

    A missing id hashes as "" (its row is reported as missing in that partition).
    """
    encoded = pc.fill_null(ids.cast(pa.string()), "").dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(distinct) % np.uint64(n_parts)
    return hashed[encoded.indices.to_numpy()].astype(np.int64)


def _normalise(batch: pa.RecordBatch) -> pa.Table:
    """Dictionary columns to plain strings and integers to float (one schema for every batch)."""
    table = pa.Table.from_batches([batch])
    cols = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        elif pa.types.is_integer(col.type) and name != "_row":
            col = col.cast(pa.float64())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _route(batches, file: str, table: str, n_parts: int, parts: list[Path]) -> None:
    """Write the rows of one table (batches with ``_row``) into the partition of their patient."""
    writers: dict[int, pq.ParquetWriter] = {}
    schema = None
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            t = _normalise(batch)
            if schema is None:
                schema = t.schema
            t = t.cast(schema)
            if "patient_id" not in t.column_names:
                raise DataError([Problem(file, None, "patient_id", "required column is missing")])
            part = _part_of(t.column("patient_id").combine_chunks(), n_parts)
            order = np.argsort(part, kind="stable")
            counts = np.bincount(part, minlength=n_parts)
            t = t.take(pa.array(order))
            start = 0
            for k in range(n_parts):
                if counts[k]:
                    if k not in writers:
                        writers[k] = pq.ParquetWriter(parts[k] / f"{table}.parquet", schema)
                    writers[k].write_table(t.slice(start, counts[k]))
                start += counts[k]
    except pa.ArrowInvalid as err:  # a later batch whose types cannot be cast to the first's
        raise DataError([Problem(file, None, None, f"inconsistent column types: {err}")]) from None
    finally:
        for w in writers.values():
            w.close()
    if schema is not None:  # every partition gets the table, empty where no row went
        for k in range(n_parts):
            if k not in writers:
                pq.write_table(schema.empty_table(), parts[k] / f"{table}.parquet")


def _schema(path: Path, table: str) -> pa.Schema:
    """The schema the batches of ``path`` will have (read from the footer or the first block)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).schema_arrow
    try:
        return pacsv.open_csv(path, convert_options=_csv_convert(table)).schema
    except pa.ArrowInvalid as err:
        raise _csv_error(path, err) from None


def _count_rows(path: Path, table: str) -> int:
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return sum(b.num_rows for b in _batches(path, table))


def _with_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each batch with ``_row``, the 1-based row number of the source file."""
    first = 1
    for batch in batches:
        rows = pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64))
        first += batch.num_rows
        yield pa.RecordBatch.from_arrays(
            [*batch.columns, rows], names=[*batch.schema.names, "_row"]
        )


def _with_row_field(schema: pa.Schema) -> pa.Schema:
    return schema.remove_metadata().append(pa.field("_row", pa.int64()))


def _inside(ids: pa.Array, value_set: pa.Array) -> np.ndarray:
    """True where the id is in ``value_set`` (a hash lookup per distinct id for dictionaries)."""
    if pa.types.is_dictionary(ids.type):
        found = _inside(ids.dictionary, value_set)
        codes = pc.fill_null(ids.indices, -1).to_numpy()
        return np.where(codes >= 0, found[np.maximum(codes, 0)], False)
    if not pa.types.is_string(ids.type):
        ids = ids.cast(pa.string())
    return pc.fill_null(pc.is_in(ids, value_set=value_set), False).to_numpy(zero_copy_only=False)


def _id_strings(ids: list[pa.Array]) -> pa.Array:
    """Patient ids as one plain string array."""
    chunked = pa.chunked_array(ids)
    if not pa.types.is_string(chunked.type):
        chunked = chunked.cast(pa.string())
    return chunked.combine_chunks()


@dataclass(frozen=True)
class RowRange:
    """Rows ``start`` to ``stop - 1`` (0-based) of a Parquet file, read by whoever needs them.

    Scoring workers read their chunk's rows themselves, so the process that plans the
    chunks reads only the ``patient_id`` columns.
    """

    path: str
    start: int
    stop: int

    def read(self) -> pa.Table:
        f = pq.ParquetFile(self.path)
        sizes = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
        bounds = np.cumsum([0, *sizes])
        if self.stop <= self.start:
            table = f.schema_arrow.empty_table()
        else:
            first = int(np.searchsorted(bounds, self.start, side="right")) - 1
            last = int(np.searchsorted(bounds, self.stop, side="left"))
            table = f.read_row_groups(list(range(first, last)))
            table = table.slice(self.start - int(bounds[first]), self.stop - self.start)
        rows = pa.array(np.arange(self.start + 1, self.stop + 1, dtype=np.int64))
        return table.append_column("_row", rows).replace_schema_metadata(None)


def materialise(part: pa.Table | RowRange | None) -> pa.Table | None:
    """The rows of a chunk's table (read now when it is a :class:`RowRange`)."""
    return part.read() if isinstance(part, RowRange) else part


class _Cursor:
    """The rows of one table, handed out front to back.

    With ``path`` (a Parquet file) the batches hold only ``patient_id`` and rows are
    handed out as a :class:`RowRange`; otherwise as the rows themselves (with ``_row``).
    """

    def __init__(
        self, batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: str | None = None
    ):
        self._batches = batches
        self._pending: pa.RecordBatch | None = None
        self._row = 0  # 0-based row of the file at the start of the pending batch
        self.schema, self.path = schema, path

    def _fill(self) -> bool:
        while self._pending is None or self._pending.num_rows == 0:
            self._pending = next(self._batches, None)
            if self._pending is None:
                return False
        return True

    def _take(self, count) -> tuple[list[pa.Array], pa.Table | RowRange]:
        """Leading rows while ``count(batch)`` says how many of the batch to take."""
        start, pieces, ids = self._row, [], []
        while self._fill():
            batch = self._pending
            stop = count(batch)
            piece = batch.slice(0, stop)
            ids.append(piece.column("patient_id"))
            if self.path is None:
                pieces.append(piece)
            self._pending = batch.slice(stop)
            self._row += stop
            if self._pending.num_rows:
                break
        if self.path is not None:
            return ids, RowRange(self.path, start, self._row)
        return ids, pa.Table.from_batches(pieces, schema=self.schema)

    def take_patients(self, value_set: pa.Array) -> pa.Table | RowRange:
        """The leading rows whose patient is in ``value_set`` (up to the first that is not)."""

        def count(batch):
            inside = _inside(batch.column("patient_id"), value_set)
            return batch.num_rows if inside.all() else int(np.argmin(inside))

        return self._take(count)[1]

    def take_rows(self, n: int) -> tuple[pa.Array, pa.Table | RowRange]:
        """The next ``n`` rows (fewer at the end) and their patient ids."""
        left = [n]

        def count(batch):
            k = min(left[0], batch.num_rows)
            left[0] -= k
            return k

        ids, part = self._take(count)
        return _id_strings(ids), part

    def exhausted(self) -> bool:
        return not self._fill()


class StudySource:
    """The tables of a study directory, read in chunks of patients (see the module docs).

    Attributes
    ----------
    files : dict
        The source file of each table, by name, as messages show it.
    n_patients : int
        Rows of the patients table.
    """

    def __init__(self, directory: str | Path):
        self.paths = study_files(directory)
        self.h5ad_cells: pd.DataFrame | None = None
        self.files = {k: v.name for k, v in self.paths.items()}
        self.schemas = {t: _schema(p, t) for t, p in self.paths.items() if p.suffix != ".h5ad"}
        missing = [
            Problem(self.files[t], None, c, "required column is missing")
            for t, schema in self.schemas.items()
            for c in REQUIRED[t]
            if c not in schema.names
        ]
        if missing:
            raise DataError(missing)
        self.n_patients = _count_rows(self.paths["patients"], "patients")
        if self.n_patients == 0:
            raise DataError(
                [Problem(self.files["patients"], None, None, "no patients in the file")]
            )

    def derive_h5ad_cells(self, singlecell) -> None:
        """MX1+ monocyte fractions from ``cells.h5ad`` (no-op without one, or once derived)."""
        if self.paths.get("cells", Path()).suffix != ".h5ad" or self.h5ad_cells is not None:
            return
        from .singlecell import mx1_monocyte_fractions

        cells = mx1_monocyte_fractions(self.paths["cells"], singlecell).drop(columns="n_parent")
        self.h5ad_cells = cells
        self.schemas["cells"] = pa.Schema.from_pandas(cells, preserve_index=False)

    @property
    def parquet_only(self) -> bool:
        """Every table is Parquet: chunks are planned as row ranges, without reading rows."""
        return all(p.suffix.lower() == ".parquet" for p in self.paths.values())

    @cached_property
    def sha256(self) -> dict[str, str]:
        """SHA-256 of every input file, by file name."""
        return {v.name: file_sha256(v) for v in self.paths.values()}

    def _table_batches(self, table: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        if table == "cells" and self.h5ad_cells is not None:
            return iter(pa.Table.from_pandas(self.h5ad_cells, preserve_index=False).to_batches())
        return _batches(self.paths[table], table, batch_rows)

    def _cursor(self, table: str, batch_rows: int = BATCH_ROWS) -> _Cursor:
        path = self.paths[table]
        schema = _with_row_field(self.schemas[table])
        if path.suffix.lower() == ".parquet":  # ids only: the rows are read by the workers
            ids = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["patient_id"])
            return _Cursor(ids, schema, str(path))
        return _Cursor(_with_rows(self._table_batches(table, batch_rows)), schema)

    def grouped_chunks(self, patients_per_chunk: int) -> Iterator[StudyChunk]:
        """One pass, nothing written; raises :class:`NotGrouped` at the end if the order does not allow it.

        Parquet tables are handed out as :class:`RowRange` (see :func:`materialise`).
        """
        cursors = {t: self._cursor(t) for t in self.paths if t != "patients"}
        patients = self._cursor("patients", patients_per_chunk)
        hashes = []
        while not patients.exhausted():
            ids, rows = patients.take_rows(patients_per_chunk)
            hashes.append(pd.util.hash_array(ids.to_numpy(zero_copy_only=False).astype(object)))
            value_set = ids.drop_null()
            tables = {t: c.take_patients(value_set) for t, c in cursors.items()}
            yield StudyChunk(rows, tables["labs"], tables.get("cells"))
        for table, cursor in cursors.items():
            if not cursor.exhausted():
                raise NotGrouped(
                    f"{self.files[table]} is not grouped by patient in the order of {self.files['patients']}"
                )
        every = np.sort(np.concatenate(hashes)) if hashes else np.array([], dtype=np.uint64)
        if (every[1:] == every[:-1]).any():  # a 64-bit hash collision only costs the slow path
            raise NotGrouped(f"a patient_id repeats in {self.files['patients']}")

    def partitioned_chunks(self, patients_per_chunk: int, workdir: Path) -> Iterator[StudyChunk]:
        """Hash partitions written under ``workdir``, read back one by one (any row order)."""
        n_parts = max(1, -(-self.n_patients // patients_per_chunk))
        parts = [workdir / f"part-{k:05d}" for k in range(n_parts)]
        for p in parts:
            p.mkdir(parents=True)
        for table in self.paths:
            batches = _with_rows(self._table_batches(table))
            _route(batches, self.files[table], table, n_parts, parts)
        for p in parts:
            read = {t: pq.read_table(p / f"{t}.parquet") if (p / f"{t}.parquet").exists() else
                    _with_row_field(self.schemas[t]).empty_table()
                    for t in self.paths}  # fmt: skip
            yield StudyChunk(read["patients"], read["labs"], read.get("cells"))
