"""Streaming a study directory into patient partitions, so scoring memory stays bounded.

Every table is read in record batches and its rows are routed by a hash of
``patient_id`` into one of ``n_parts`` partitions (small study directories in
Parquet). All rows of a patient land in the same partition, whatever the order of the
input; each row keeps its original 1-based row number in ``_row``, so problems found
in a partition still name the row of the original file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .dataset import find_table
from .errors import DataError, Problem

BATCH_ROWS = 1 << 18
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


@dataclass
class Partitions:
    """The partition directories, the display name and SHA-256 of every input file."""

    parts: list[Path]
    files: dict[str, str]
    sha256: dict[str, str]
    n_patients: int
    h5ad_cells: pd.DataFrame | None = field(default=None)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _batches(path: Path, table: str):
    """Record batches of a CSV or Parquet table; CSV numeric columns parsed as float64."""
    if path.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        return
    types = {c: pa.float64() for c in NUMERIC[table]} | {c: pa.string() for c in STRINGS[table]}
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        yield from reader
    except pa.ArrowInvalid as err:
        text = str(err)
        match = re.search(r"column #(\d+)", text)
        header = pacsv.open_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={})
        ).schema.names
        if match and int(match.group(1)) < len(header):
            problems = _non_numeric_rows(path, header[int(match.group(1))])
            if problems:
                raise DataError(problems) from None
        raise DataError(
            [Problem(path.name, None, None, f"cannot parse: {text.splitlines()[0]}")]
        ) from None


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


def _normalise(batch: pa.RecordBatch, first_row: int) -> pa.Table:
    """Dictionary columns to plain strings (one schema for every batch), plus ``_row``."""
    table = pa.Table.from_batches([batch])
    cols, names = [], []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        elif pa.types.is_integer(col.type):
            col = col.cast(pa.float64())
        cols.append(col)
        names.append(name)
    cols.append(pa.array(np.arange(first_row, first_row + len(table), dtype=np.int64)))
    names.append("_row")
    return pa.Table.from_arrays(cols, names=names)


def _route(path: Path, table: str, n_parts: int, parts: list[Path]) -> None:
    writers: dict[int, pq.ParquetWriter] = {}
    schema = None
    first_row = 1
    try:
        for batch in _batches(path, table):
            if batch.num_rows == 0:
                continue
            t = _normalise(batch, first_row)
            first_row += batch.num_rows
            if schema is None:
                schema = t.schema
            t = t.cast(schema)
            if "patient_id" not in t.column_names:
                raise DataError(
                    [Problem(path.name, None, "patient_id", "required column is missing")]
                )
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
        raise DataError(
            [Problem(path.name, None, None, f"inconsistent column types: {err}")]
        ) from None
    finally:
        for w in writers.values():
            w.close()
    if schema is not None:  # every partition gets the table, empty where no row went
        for k in range(n_parts):
            if k not in writers:
                pq.write_table(schema.empty_table(), parts[k] / f"{table}.parquet")


def _count_rows(path: Path, table: str) -> int:
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return sum(b.num_rows for b in _batches(path, table))


def partition_study(
    directory: str | Path, patients_per_part: int, workdir: Path, singlecell=None
) -> Partitions:
    """Split a study directory into patient partitions under ``workdir``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError([Problem(str(directory), None, None, "study directory not found")])
    sources = {
        "patients": find_table(directory, "patients", required=True),
        "labs": find_table(directory, "labs", required=True),
    }
    cells = find_table(directory, "cells", required=False)
    h5ad = directory / "cells.h5ad"
    if cells is not None:
        sources["cells"] = cells
    n = _count_rows(sources["patients"], "patients")
    if n == 0:
        raise DataError([Problem(sources["patients"].name, None, None, "no patients in the file")])
    n_parts = max(1, -(-n // patients_per_part))
    parts = [workdir / f"part-{k:05d}" for k in range(n_parts)]
    for p in parts:
        p.mkdir(parents=True)
    for table, path in sources.items():
        _route(path, table, n_parts, parts)
    derived = None
    if cells is None and h5ad.exists():
        from .singlecell import mx1_monocyte_fractions

        derived = mx1_monocyte_fractions(h5ad, singlecell)
        sources["cells"] = h5ad
        cells_path = workdir / "cells_from_h5ad.parquet"
        derived.drop(columns="n_parent").to_parquet(cells_path, index=False)
        _route(cells_path, "cells", n_parts, parts)
    files = {k: v.name for k, v in sources.items()}
    return Partitions(parts, files, {v.name: file_sha256(v) for v in sources.values()}, n, derived)
