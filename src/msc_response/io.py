"""Reading and atomically writing tables (CSV or Parquet, chosen by extension), and the
rules every output path obeys.

Every output of the project goes through :func:`atomic_path`: the data are written into
the output's *work directory*, a hidden directory beside it
(``.NAME.msc-tmp-PID-START-*``, see :func:`work_dir`), and moved into place with
``os.replace``, so a job killed at any point leaves the previous file or none. Everything
else a job writes before its output is in place (hash partitions of patient rows, a
directory being built) lives in the same work directory, which is removed when the job
ends, whether it succeeds or fails; one left by a killed process is removed by the next
run that writes the same output.

:func:`check_outputs` is the one rule for output paths, used by every verb before any
work: an output never resolves to one of the inputs (nor lies inside an input directory),
is not an existing directory, and can be written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

import pandas as pd

from . import processes
from .errors import ConfigError

TABLE_SUFFIXES = (".csv", ".parquet")

# What the jobs write beside an output ``NAME.ext``: ``NAME<suffix>`` (see :func:`sidecar`).
REJECTED = ".rejected.csv"  # scoring: the patients not scored, with the reason
PROBLEMS = ".problems.csv"  # every row problem (patient ids included: local files only)
SUMMARY = ".summary.json"  # scoring: the run summary
EXCLUDED = ".excluded.csv"  # features: the patients left out, with the reason
ASSUMPTIONS = ".assumptions.csv"  # features: the values assumed (the config's ``assume``)
FLOW = ".flow.json"  # features: the patient flow and the feature spec
CELLS_FROM_H5AD = ".cells_from_h5ad.csv"  # features: the cell fractions derived from AnnData


def sidecar_name(name: str, suffix: str) -> str:
    """The name of what a job writes beside output ``name``, the one rule for every engine.

    A file drops its extension: ``features.parquet`` -> ``features<suffix>``. A folder
    (a name without a file extension of :data:`FILE_SUFFIXES`: the Spark engine's dataset
    directory) keeps its whole name: ``preds.v2`` -> ``preds.v2<suffix>``.
    """
    path = PurePosixPath(name.rstrip("/"))
    return (path.stem if path.suffix.lower() in FILE_SUFFIXES else path.name) + suffix


def sidecar(out: str | os.PathLike, suffix: str) -> Path:
    """:func:`sidecar_name` in the output's folder."""
    out = Path(out)
    return out.with_name(sidecar_name(out.name, suffix))


def sidecar_as_written(out: str, suffix: str) -> str:
    """:func:`sidecar` of an output given as a path or URI (``hdfs://``, ``s3a://``), kept
    as written (no resolving, no re-encoding)."""
    stripped = out.rstrip("/")
    parent, sep, name = stripped.rpartition("/")
    return parent + sep + sidecar_name(name, suffix)


def names_a_folder(out: str | os.PathLike) -> bool:
    """Whether output ``out`` names a folder by :func:`sidecar_name`'s rule (no file extension)."""
    return PurePosixPath(str(out).rstrip("/")).suffix.lower() not in FILE_SUFFIXES


def table_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"parquet"`` from the file extension; anything else is an error."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"unsupported table extension {suffix!r} in {str(path)!r}; use .csv or .parquet"
        )
    return suffix[1:]


#: What marks a work directory: ``.NAME.msc-tmp-PID-START-RANDOM`` beside output ``NAME``.
WORK_MARK = "msc-tmp"
#: Work directories of earlier versions (pid only), still cleaned up.
_LEGACY_MARKS = ("simulate", "import")


def _work_owner(output_name: str, entry: str) -> tuple[int, int | None] | None:
    """``(pid, start)`` of the process owning work directory ``entry`` of ``output_name``."""
    prefix = re.escape(f".{output_name}.")
    m = re.match(rf"^{prefix}{WORK_MARK}-(\d+)-(\d+)-", entry)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.match(rf"^{prefix}(?:{'|'.join(_LEGACY_MARKS)})-(\d+)-", entry)
    return (int(m.group(1)), None) if m else None


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the work directories of ``path`` whose process has ended; returns them.

    Only directories named for this output and owned by a process that no longer runs
    (pid and start time, so a reused pid does not keep a leftover alive) are removed.
    """
    path = Path(os.path.abspath(path))
    if not path.parent.is_dir():
        return []
    removed = []
    for entry in path.parent.iterdir():
        owner = _work_owner(path.name, entry.name)
        if owner is None or not entry.is_dir() or entry.is_symlink():
            continue
        if not processes.is_running(*owner):
            shutil.rmtree(entry, ignore_errors=True)  # a concurrent cleaner may get there first
            removed.append(entry)
    return removed


def _cannot_write(path: Path, err: OSError, option: str | None) -> ConfigError:
    where = str(err.filename or path.parent)
    return ConfigError(f"{option + ': ' if option else ''}cannot write {str(path)!r}: "
                       f"{err.strerror or err} ({where!r}){_free_space(where)}; nothing was written")  # fmt: skip


#: What a full disk, a quota, a read-only file system or a folder without permission raise:
#: an error of the place written, not of the program (exit 2, one line naming the place).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _free_space(where: str | os.PathLike) -> str:
    """``", N bytes free there"`` for the file system holding ``where`` (empty when unknown)."""
    existing = next((p for p in (Path(where), *Path(where).parents) if p.exists()), None)
    try:
        free = shutil.disk_usage(existing).free if existing is not None else None
    except OSError:
        free = None
    return "" if free is None else f", {free:,} bytes free there"


class CannotWrite(ConfigError):
    """An output that the disk cannot take (full, read-only, not permitted): exit 2, one line."""

    def __init__(self, path: str | os.PathLike | None, strerror: str):
        self.path, self.strerror = path, strerror
        where = f" {str(path)!r}" if path is not None else ""
        super().__init__(f"cannot write{where}: {strerror}{_free_space(path or Path.cwd())}; free some "
                         "space or choose another location (nothing was written)")  # fmt: skip


def disk_error(err: BaseException, path: str | os.PathLike | None = None) -> CannotWrite | None:
    """The one clear error for writing ``path`` (else the file ``err`` names) onto a full
    disk, a read-only file system or a folder without permission; None for any other error.

    ``path`` is the output the user named: a temporary file inside its work directory is
    not what they need to hear about.
    """
    if isinstance(err, CannotWrite):
        return err if path is None else CannotWrite(path, err.strerror)
    if not isinstance(err, OSError) or err.errno not in DISK_ERRNOS:
        return None
    return CannotWrite(path or err.filename, err.strerror or str(err))


@contextlib.contextmanager
def work_dir(path: str | os.PathLike, *, option: str | None = None) -> Iterator[Path]:
    """A new hidden directory beside ``path`` for everything written before ``path`` is in place.

    Leftovers of killed runs for the same output are removed first. The directory (and
    any parent folder this call had to create) is removed when the block ends, whether it
    succeeds or fails. An output location that cannot be written is a :class:`ConfigError`
    (exit 2) naming it (and ``option``, the parameter that gave it).
    """
    path = Path(os.path.abspath(path))
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        pid, start = processes.identity()
        work = Path(
            tempfile.mkdtemp(prefix=f".{path.name}.{WORK_MARK}-{pid}-{start}-", dir=path.parent)
        )
    except OSError as err:
        _remove_empty(missing)
        raise _cannot_write(path, err, option) from None
    try:
        yield work
    except BaseException as err:
        shutil.rmtree(work, ignore_errors=True)  # the error that got here is the one to see
        _remove_empty(missing)
        if not _writing(err, work):
            raise
        raise disk_error(err, path) from None  # said of this output, not of a temporary
    shutil.rmtree(work)


def _writing(err: BaseException, work: Path) -> bool:
    """Whether ``err`` is the disk refusing what is written in ``work``: a full disk or a
    read-only file system; no permission only for a file in ``work`` (not an input read)."""
    if isinstance(err, CannotWrite):
        return True
    if disk_error(err) is None:
        return False
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return err.filename is not None and Path(work) in Path(os.path.abspath(err.filename)).parents


def _remove_empty(created: list[Path]) -> None:
    """Remove folders this process created for an output that was never written (deepest first)."""
    for p in created:
        with contextlib.suppress(OSError):  # not empty (someone else wrote there) or gone: kept
            p.rmdir()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for ``path`` in its work directory; move it onto ``path`` on success.

    The temporary path has ``path``'s name (so its extension); other temporaries of the
    same output may be written beside it (``tmp.parent``): they are removed with the work
    directory (see :func:`work_dir`). ``path`` may not be an existing directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{str(path)!r} is an existing directory, not a file; nothing was written"
        )
    with work_dir(path) as work:
        tmp = work / path.name
        tmp.touch()
        yield tmp
        os.replace(tmp, path)


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    option: str = "out",
) -> None:
    """The rule for output paths, checked before any work; :class:`ConfigError` naming ``option``.

    - No output is, or lies inside, one of ``inputs`` (existing or not: a study table
      that does not exist yet would become one; hard links count as the same file).
    - No output is an existing directory.
    - The folder of each output can be written (its nearest existing ancestor, tried by
      creating and removing a directory in it).
    """
    outputs = [Path(o) for o in outputs]
    inputs = [Path(i) for i in inputs]
    for out in outputs:
        for inp in inputs:
            clash = _clash(out, inp)
            if clash:
                raise ConfigError(
                    f"{option}: {str(out)!r} is {clash} {str(inp)!r}; writing it would destroy the "
                    "input: choose another output path (nothing was written)"
                )
        if out.is_dir():
            raise ConfigError(
                f"{option}: {str(out)!r} is an existing directory; an output never replaces one: "
                "give a new path (nothing was written)"
            )
    for folder in sorted({Path(os.path.abspath(o)).parent for o in outputs}):
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(existing))
            os.rmdir(tempfile.mkdtemp(prefix=f".{WORK_MARK}-probe-", dir=existing))
        except OSError as err:
            raise ConfigError(
                f"{option}: cannot write in {str(existing)!r}: {err.strerror or err}"
                f"{_free_space(existing)}; nothing was written"
            ) from None


def check_output_folder(
    folder: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    option: str = "out",
    previous: Callable[[Path], bool],
    kind: str,
) -> None:
    """The rule for an output that is a folder (a page's, a study's), checked before any work.

    ``folder`` is new, empty, or ``kind`` (an earlier output of the same kind:
    ``previous(folder)``); never a file, never a path that names a file (``rep.html``
    would silently become a folder); never one of ``inputs`` nor inside one, nor a folder
    holding one; and it can be written (:func:`check_outputs`). :class:`ConfigError`
    naming ``option``.
    """
    folder = Path(folder)
    what = f"a folder (new, empty, or {kind})"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{option}: {str(folder)!r} is a file; {option} is {what} (nothing was written)"
        )
    if not folder.exists() and folder.suffix.lower() in FILE_SUFFIXES:
        raise ConfigError(f"{option}: {str(folder)!r} names a file, but {option} is {what}: it would "
                          "become a folder of that name (nothing was written)")  # fmt: skip
    for inp in inputs:
        real_in, real_out = Path(os.path.realpath(inp)), Path(os.path.realpath(folder))
        clash = _clash(folder, Path(inp)) or (
            "a folder holding the input" if real_out in real_in.parents else None
        )
        if clash:
            raise ConfigError(
                f"{option}: {str(folder)!r} is {clash} {str(inp)!r}; writing it would change the "
                "input: choose another output folder (nothing was written)"
            )
    if folder.is_dir() and any(folder.iterdir()) and not previous(folder):
        held = sorted(p.name for p in folder.iterdir())[:5]
        raise ConfigError(f"{option}: {str(folder)!r} is not empty and is not {kind} (it holds "
                          f"{held}); choose an empty or new folder - nothing is replaced")  # fmt: skip
    check_outputs([folder / ".probe"], option=option)


#: Suffixes that name a file, never an output folder.
FILE_SUFFIXES = frozenset(
    {".html", ".htm", ".json", ".csv", ".parquet", ".png", ".md", ".txt", ".pdf"}
)


def _clash(out: Path, inp: Path) -> str | None:
    """How ``out`` would write over input ``inp`` (None: it would not)."""
    real_out, real_in = Path(os.path.realpath(out)), Path(os.path.realpath(inp))
    if real_out == real_in:
        return "the input"
    if real_in in real_out.parents:
        return "inside the input"
    try:
        return "the same file (a hard link) as the input" if os.path.samefile(out, inp) else None
    except OSError:  # one of them does not exist
        return None


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
