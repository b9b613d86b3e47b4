"""Reading and atomically writing tables (CSV or Parquet, chosen by extension).

Every output of the project goes through :func:`atomic_path`: the data are written
to a temporary file in the destination folder and moved into place with
``os.replace``, so a job killed at any point leaves the previous file or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet")


def table_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"parquet"`` from the file extension; anything else is an error."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"unsupported table extension {suffix!r} in {str(path)!r}; use .csv or .parquet"
        )
    return suffix[1:]


def read_table(path: str | os.PathLike, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    CSV goes through pyarrow's multi-threaded reader. Columns named in ``categorical``
    (repetitive strings such as ids, test names, units) become pandas categoricals,
    which keeps millions of rows small in memory.
    """
    import pyarrow as pa

    fmt = table_format(path)
    if fmt == "parquet":
        df = pd.read_parquet(path)
    else:
        import pyarrow.csv as pacsv

        types = {c: pa.dictionary(pa.int32(), pa.string()) for c in categorical}
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        )
        df = table.to_pandas()
    for col in categorical:
        if col in df.columns and not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("category")
    return df


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` atomically as CSV or Parquet, by the extension of ``path``."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, lineterminator="\n")
    return Path(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def encode_chunk(df: pd.DataFrame, fmt: str):
    """A chunk ready for :meth:`ChunkWriter.write_encoded`: an Arrow table, or CSV text.

    Encoding is the costly part of writing, so parallel workers do it and the one
    writer only appends. Categoricals become dictionary<int32, string> (chunks with
    different categories share one Parquet schema); the CSV text starts with its header.
    """
    if fmt == "parquet":
        import pyarrow as pa

        table = pa.Table.from_pandas(df, preserve_index=False)
        fields = [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
            if pa.types.is_dictionary(f.type)
            else f
            for f in table.schema
        ]
        return table.cast(pa.schema(fields)).replace_schema_metadata(None)
    return df.to_csv(index=False, lineterminator="\n")


class ChunkWriter:
    """Appends DataFrame chunks to one CSV or Parquet file (format by extension).

    The first chunk fixes the Parquet schema; CSV gets one header. Write to a temporary
    path (see :func:`atomic_path`) to make the result atomic.
    """

    def __init__(self, path: str | os.PathLike, fmt: str | None = None):
        # ``fmt`` for a temporary path whose extension is not the destination's
        self.path, self.fmt = Path(path), fmt or table_format(path)
        self._pq = None
        self._chunks = 0

    def write(self, df: pd.DataFrame) -> None:
        self.write_encoded(encode_chunk(df, self.fmt))

    def write_encoded(self, chunk) -> None:
        """Append a chunk made by :func:`encode_chunk`."""
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, chunk.schema, compression="zstd")
            self._pq.write_table(chunk.cast(self._pq.schema))
        else:
            text = chunk if self._chunks == 0 else chunk.split("\n", 1)[1]
            with open(self.path, "a" if self._chunks else "w") as f:
                f.write(text)
        self._chunks += 1

    def close(self, empty_columns: list[str] | None = None) -> None:
        """Finish the file; with no chunk written, an empty table with ``empty_columns``."""
        if self._pq is not None:
            self._pq.close()
        elif self._chunks == 0 and empty_columns is not None:
            write = pd.DataFrame(columns=empty_columns)
            if self.fmt == "parquet":
                write.to_parquet(self.path, index=False)
            else:
                write.to_csv(self.path, index=False, lineterminator="\n")
