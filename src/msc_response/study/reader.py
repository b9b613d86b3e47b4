"""The one study reader: a study directory read whole or in chunks of patients.

Every path yields :class:`StudyChunk` tables whose rows keep their 1-based row of the file
in ``_row``, and turns a chunk into a :class:`~msc_response.study.validate.Study` through
:func:`study_from_chunk` (declared types, then the validators):

- :func:`load_study` reads every table whole: one chunk (training, features, the API).
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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DataError, Problem
from ..progress import timed
from . import files as F
from .problems import ProblemLog
from .singlecell import mx1_monocyte_fractions
from .tables import normalise, to_frame
from .validate import Study, validate_cells, validate_labs, validate_patients


class NotGrouped(Exception):
    """The study's rows are not grouped by patient in the patients file's order."""


@dataclass(frozen=True)
class RowRange:
    """Rows ``start`` to ``stop - 1`` (0-based) of a Parquet table, read by whoever needs them.

    Scoring workers read their chunk's rows themselves, so the process that plans the
    chunks reads only the ``patient_id`` columns.
    """

    path: str
    start: int
    stop: int

    def read(self) -> pa.Table:
        table = F.ParquetParts(self.path).read(self.start, self.stop)
        rows = pa.array(np.arange(self.start + 1, self.stop + 1, dtype=np.int64))
        return table.append_column("_row", rows)


@dataclass
class StudyChunk:
    """The rows of some patients, from every table (each with ``_row``), or where to read them."""

    patients: pa.Table | RowRange
    labs: pa.Table | RowRange
    cells: pa.Table | RowRange | None


def materialise(part: pa.Table | RowRange | None) -> pa.Table | None:
    """The rows of a chunk's table (read now when it is a :class:`RowRange`)."""
    return part.read() if isinstance(part, RowRange) else part


def _frame(table: str, part, file: str, seconds: dict | None) -> pd.DataFrame | None:
    with timed(seconds, "read_s"):
        t = materialise(part)
    with timed(seconds, "type_s"):
        return None if t is None else to_frame(normalise(table, t, file))


def study_from_chunk(
    chunk: StudyChunk,
    files: dict[str, Path],
    *,
    cells_derived: bool = False,
    reference_units: dict[str, str] | None = None,
    simulated: bool = False,
    seconds: dict[str, float] | None = None,
) -> Study:
    """Validate the tables of a chunk (or a whole study) into a :class:`Study`.

    ``files`` name the source of each table in messages; ``reference_units`` are a model's
    training units (see :func:`~msc_response.study.validate.validate_labs`). ``seconds``,
    when given, gets the time spent reading (``read_s``), typing (``type_s``) and
    validating (``validate_s``) added to it. Tables are taken one after the other
    (patients, labs, cells), so the first structural problem raised is the same whatever
    is timed.
    """
    names = {k: F.display_name(Path(v)) for k, v in files.items()}
    log = ProblemLog()
    patients = _frame("patients", chunk.patients, names["patients"], seconds)
    with timed(seconds, "validate_s"):
        patients = validate_patients(patients, names["patients"], log)
    labs = _frame("labs", chunk.labs, names["labs"], seconds)
    with timed(seconds, "validate_s"):
        labs, lab_units = validate_labs(labs, patients, names["labs"], log, reference_units)
    cells = _frame("cells", chunk.cells, names.get("cells", "cells"), seconds)
    with timed(seconds, "validate_s"):
        if cells is not None:
            cells = validate_cells(cells, patients, names["cells"], log)
        problems = log.frame()
    return Study(patients, labs, cells, lab_units, {k: Path(v) for k, v in files.items()},
                 cells_derived, problems, simulated)  # fmt: skip


def study_from_frames(
    patients: pd.DataFrame,
    labs: pd.DataFrame,
    cells: pd.DataFrame | None = None,
    files: dict[str, Path] | None = None,
    **kwargs,
) -> Study:
    """:func:`study_from_chunk` for tables in memory (e.g. the simulator's)."""
    files = files or {"patients": Path("patients"), "labs": Path("labs"), "cells": Path("cells")}

    def arrow(df):
        t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        return t if "_row" in t.column_names else t.append_column(
            "_row", pa.array(np.arange(1, len(df) + 1, dtype=np.int64)))  # fmt: skip

    chunk = StudyChunk(arrow(patients), arrow(labs), None if cells is None else arrow(cells))
    return study_from_chunk(chunk, files, **kwargs)


def load_study(directory: str | Path, singlecell=None, *, reference_units=None) -> Study:
    """Read and validate a whole study directory (the data contract: docs/data-contract.md).

    Parameters
    ----------
    directory : path
        Holds ``patients`` and ``labs`` and optionally ``cells`` (each CSV, Parquet or a
        directory of Parquet parts) or ``cells.h5ad``.
    singlecell : SingleCell config, optional
        How to derive MX1+ monocyte fractions from ``cells.h5ad``.

    Raises
    ------
    DataError
        A structural problem. Row problems are in ``Study.problems``; the verbs decide
        what they mean (:mod:`msc_response.study.policy`).
    """
    source = StudySource(directory)
    source.derive_h5ad_cells(singlecell)
    return study_from_chunk(source.whole(), source.paths, cells_derived=source.h5ad_cells is not None,
                            reference_units=reference_units, simulated=F.is_simulated(directory))  # fmt: skip


# ----------------------------------------------------------------------------------------
# chunks


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    paths = F.ParquetParts(str(path)).files if path.is_dir() else [path]
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _part_of(ids: pa.Array, n_parts: int) -> np.ndarray:
    """Partition of each id: a stable hash of its text, hashed once per distinct id.

    A missing id hashes as "" (its row is reported as missing in that partition).
    """
    encoded = pc.fill_null(ids.cast(pa.string()), "").dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    hashed = pd.util.hash_array(distinct) % np.uint64(n_parts)
    return hashed[encoded.indices.to_numpy()].astype(np.int64)


def _route(batches, file: str, table: str, n_parts: int, parts: list[Path]) -> None:
    """Write the rows of one table (batches with ``_row``, as stored) into their patient's partition."""
    writers: dict[int, pq.ParquetWriter] = {}
    schema = None
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            t = pa.Table.from_batches([batch])
            if schema is None:
                schema = t.schema.remove_metadata()
            t = t.cast(schema)
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
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:  # a part file with other types
        raise DataError([Problem(file, None, None, f"inconsistent column types: {err}")]) from None
    finally:
        for w in writers.values():
            w.close()
    if schema is not None:  # every partition gets the table, empty where no row went
        for k in range(n_parts):
            if k not in writers:
                pq.write_table(schema.empty_table(), parts[k] / f"{table}.parquet")


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


def _inside(ids: pa.Array, value_set: pa.Array, last: list | None = None) -> np.ndarray:
    """True where the id is in ``value_set`` (a hash lookup per distinct id for dictionaries).

    ``last`` (a list kept by the caller for one ``value_set``) holds the last dictionary and
    its lookup: the batches of one Parquet row group each carry a copy of the row group's
    whole dictionary, so consecutive batches mostly look the same ids up."""
    if pa.types.is_dictionary(ids.type):
        if last and last[0].equals(ids.dictionary):
            found = last[1]
        else:
            found = _inside(ids.dictionary, value_set)
            if last is not None:
                last[:] = [ids.dictionary, found]
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


class _Cursor:
    """The rows of one table, handed out front to back.

    With ``path`` (Parquet) the batches hold only ``patient_id`` and rows are handed out
    as a :class:`RowRange`; otherwise as the rows themselves (with ``_row``).
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

        last: list = []

        def count(batch):
            inside = _inside(batch.column("patient_id"), value_set, last)
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
    """The tables of a study directory, read whole or in chunks of patients (see the module docs).

    Structural problems of the headers (missing or repeated columns, unreadable files)
    are raised here, before any row is read.

    Attributes
    ----------
    paths : dict
        The source file (or part directory) of each table.
    files : dict
        How messages name each table's source.
    n_patients : int
        Rows of the patients table.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.paths = F.study_files(directory)
        self.h5ad_cells: pd.DataFrame | None = None
        self.files = {k: F.display_name(v) for k, v in self.paths.items()}
        self.schemas = {t: F.schema(p, t) for t, p in self.paths.items() if p.suffix != ".h5ad"}
        self.n_patients = F.count_rows(self.paths["patients"], "patients")
        if self.n_patients == 0:
            raise DataError(
                [Problem(self.files["patients"], None, None, "no patients in the file")]
            )

    def derive_h5ad_cells(self, singlecell) -> None:
        """MX1+ monocyte fractions from ``cells.h5ad`` (no-op without one, or once derived)."""
        if self.paths.get("cells", Path()).suffix != ".h5ad" or self.h5ad_cells is not None:
            return
        cells = mx1_monocyte_fractions(self.paths["cells"], singlecell).drop(columns="n_parent")
        self.h5ad_cells = cells
        self.schemas["cells"] = pa.Schema.from_pandas(cells, preserve_index=False)

    @property
    def parquet_only(self) -> bool:
        """Every table is Parquet: chunks are planned as row ranges, without reading rows."""
        return all(F.is_parquet(p) for p in self.paths.values())

    @cached_property
    def sha256(self) -> dict[str, str]:
        """SHA-256 of every input file (of a part directory's parts, in order), by name."""
        return {F.display_name(v): file_sha256(v) for v in self.paths.values()}

    def _table_batches(
        self, table: str, batch_rows: int = F.BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        if table == "cells" and self.h5ad_cells is not None:
            return iter(pa.Table.from_pandas(self.h5ad_cells, preserve_index=False).to_batches())
        return F.batches(self.paths[table], table, batch_rows)

    def whole(self) -> StudyChunk:
        """Every row of every table, as one chunk."""
        tables = {}
        for table, path in self.paths.items():
            if table == "cells" and self.h5ad_cells is not None:
                cells = pa.Table.from_pandas(self.h5ad_cells, preserve_index=False)
                tables[table] = cells.append_column(
                    "_row", pa.array(np.arange(1, cells.num_rows + 1, dtype=np.int64)))  # fmt: skip
            elif path.suffix != ".h5ad":
                tables[table] = F.read_whole(path, table)
        return StudyChunk(tables["patients"], tables["labs"], tables.get("cells"))

    def _cursor(self, table: str, batch_rows: int = F.BATCH_ROWS) -> _Cursor:
        path = self.paths[table]
        schema = _with_row_field(self.schemas[table])
        if F.is_parquet(path):  # ids only: the rows are read by the workers
            ids = F.ParquetParts(str(path)).batches(columns=["patient_id"], batch_rows=batch_rows)
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
            # categorize=False: the same hashes without factorising ids that are all distinct
            strings = ids.to_numpy(zero_copy_only=False).astype(object)
            hashes.append(pd.util.hash_array(strings, categorize=False))
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
