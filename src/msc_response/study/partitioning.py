"""Hash parts by patient: each table a directory of ``N`` Parquet part files, a patient's
rows in part ``patient_hash(patient_id) % N`` of every table.

A study written so (``simulate``/``import`` with ``--parts N``) is already grouped by
patient: the Spark engine scores part ``k`` of every table together, with no shuffle of
lab rows. The layout is declared in each part's Parquet footer (key-value metadata
:data:`KEY`: the scheme, the part and ``N``), which a reader reads anyway; the rows are
checked against the declaration when they are read (:func:`misplaced`), so a wrong
declaration stops the job naming the file instead of giving wrong results.

For every other reader the parts are an ordinary part directory (read in name order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io import encode_chunk

#: The footer key declaring a part, and the one scheme it may declare.
KEY = "msc_response.partitioning"
SCHEME = "patient_id/siphash24-utf8-stripped/v1"
#: pandas' documented default SipHash key, named here so a pandas change cannot move parts.
_HASH_KEY = "0123456789123456"
#: A part's rows are buffered up to this many, so row groups are not tiny.
_FLUSH_ROWS = 50_000


def part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def patient_hash(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash of each ``patient_id`` as ``str.strip`` leaves it (a padded id
    goes with its patient, as the reader matches it); a missing id hashes as ``""``.

    Hashed once per distinct id (SipHash-2-4 of the UTF-8 text, with a fixed key); a
    dictionary column (as the simulator and importers write ids) once per dictionary entry.
    """
    if isinstance(ids, pa.ChunkedArray):  # chunk by chunk: their dictionaries may differ
        found = [patient_hash(chunk) for chunk in ids.chunks]
        return np.concatenate(found) if found else np.empty(0, dtype=np.uint64)
    encoded = (
        ids if pa.types.is_dictionary(ids.type) else pc.dictionary_encode(ids.cast(pa.string()))
    )
    distinct = encoded.dictionary.cast(pa.string()).to_pylist()
    stripped = np.array([("" if s is None else s.strip()) for s in distinct] + [""], dtype=object)
    hashed = pd.util.hash_array(stripped, encoding="utf8", hash_key=_HASH_KEY, categorize=False)
    codes = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
    return hashed[codes]


def part_of(ids: pa.Array | pa.ChunkedArray, n_parts: int) -> np.ndarray:
    """The part (0 to ``n_parts - 1``) of each row's patient."""
    return (patient_hash(ids) % np.uint64(n_parts)).astype(np.int64)


def declaration(part: int, n_parts: int) -> dict[str, str]:
    """The footer metadata of part ``part`` of ``n_parts``."""
    return {KEY: json.dumps({"scheme": SCHEME, "part": part, "parts": n_parts}, sort_keys=True)}


def declared(metadata) -> tuple[int, int] | None:
    """``(part, n_parts)`` from a footer's key-value metadata (str or bytes keys), or None
    when the footer declares nothing this reader knows (an unknown scheme: not trusted)."""
    if not metadata:
        return None
    raw = metadata.get(KEY, metadata.get(KEY.encode()) if isinstance(metadata, dict) else None)
    if raw is None:
        return None
    try:
        found = json.loads(raw)
        part, n = found["part"], found["parts"]
        ok = found["scheme"] == SCHEME and type(part) is int and type(n) is int and 0 <= part < n
    except (ValueError, TypeError, KeyError):
        return None
    return (part, n) if ok else None


def misplaced(ids: pa.Array | pa.ChunkedArray, part: int, n_parts: int) -> np.ndarray:
    """Positions of the rows whose patient does not belong to ``part`` of ``n_parts``."""
    return np.flatnonzero(part_of(ids, n_parts) != part)


class PartWriter:
    """Appends DataFrame chunks to ``n_parts`` Parquet part files in ``directory``, each row
    to its patient's part, each part declaring itself in its footer.

    Rows keep their order within a part (a patient's rows stay together when the chunks
    have them together). Every part is written, empty ones too, so a reader finds ``N``.
    """

    def __init__(self, directory: str | os.PathLike, n_parts: int):
        if type(n_parts) is not int or n_parts < 1:
            raise ValueError(f"n_parts: expected a whole number >= 1, got {n_parts!r}")
        self.directory, self.n_parts = Path(directory), n_parts
        self._schema: pa.Schema | None = None
        self._writers: dict[int, pq.ParquetWriter] = {}
        self._pending: dict[int, list[pa.Table]] = {p: [] for p in range(n_parts)}

    def write(self, df: pd.DataFrame) -> None:
        table = encode_chunk(df, "parquet")
        if self._schema is None:
            self._schema = table.schema
        table = table.cast(self._schema)
        parts = part_of(table.column("patient_id"), self.n_parts)
        order = np.argsort(parts, kind="stable")
        counts = np.bincount(parts, minlength=self.n_parts)
        table = table.take(pa.array(order))
        start = 0
        for p in np.flatnonzero(counts).tolist():
            self._pending[p].append(table.slice(start, int(counts[p])))
            start += int(counts[p])
            if sum(t.num_rows for t in self._pending[p]) >= _FLUSH_ROWS:
                self._flush(p)

    def _flush(self, p: int) -> None:
        if p not in self._writers:
            self.directory.mkdir(parents=True, exist_ok=True)
            schema = self._schema.with_metadata(declaration(p, self.n_parts))
            self._writers[p] = pq.ParquetWriter(
                self.directory / part_name(p), schema, compression="zstd"
            )
        if self._pending[p]:
            self._writers[p].write_table(pa.concat_tables(self._pending[p]))
            self._pending[p] = []

    def close(self, empty_columns: list[str] | None = None) -> None:
        """Finish every part; with no chunk written, empty parts with ``empty_columns`` (text)."""
        if self._schema is None:
            self._schema = pa.schema([(c, pa.string()) for c in empty_columns or []])
        for p in range(self.n_parts):
            self._flush(p)
            self._writers.pop(p).close()
