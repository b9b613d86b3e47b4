"""Files for the Spark engine: a study's tables as Spark DataFrames, and atomic outputs.

Any filesystem Spark reads is reached through Hadoop's FileSystem API in the driver's
JVM (local paths, ``hdfs://``, ``s3a://`` with the usual Hadoop settings). Tables are
found by the local reader's rule (:func:`msc_response.study.files.find_table`) and their
headers and column types checked by its rules (``check_columns``, ``normalise``) before
any row is read.

Every row gets ``_row``, its 1-based data row of the file, as the local reader numbers it:

* Parquet: ``_metadata.row_index`` (Spark 4) plus the rows of the part files before it
  (a directory's parts in the local reader's order: by path).
* CSV: Spark splits a file into blocks; a row's position in its block
  (``monotonically_increasing_id``, consecutive within a task) plus the rows of the blocks
  before it (counted in a first pass over the file, which also finds malformed rows).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from ...errors import ConfigError, DataError, Problem
from ...io import sidecar_as_written, work_dir
from ...study import files as F
from ...study import partitioning
from ...study.reader import file_sha256
from ...study.singlecell import mx1_monocyte_fractions
from ...study.tables import TABLES, check_columns, normalise

TABLE_ORDER = ("patients", "labs", "cells")

_UNPARSED = "_msc_unparsed_record"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def to_uri(text: str) -> str:
    """A Hadoop path: URIs as given, local paths made absolute (``file:``, not percent-encoded)."""
    text = str(text)
    if _SCHEME.match(text):
        return text.rstrip("/") or text
    return "file:" + str(Path(text).resolve())


def local_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI (None for other filesystems)."""
    if not uri.startswith("file:"):
        return None
    return Path("/" + uri[len("file:") :].lstrip("/"))


class Hadoop:
    """Hadoop's FileSystem API, through the driver's JVM."""

    def __init__(self, spark):
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()
        self._status: dict[str, object] = {}

    def path(self, uri: str):
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def fs(self, uri: str):
        if uri.startswith("file:"):  # the raw one: renames do not take hidden .crc files along
            return self._jvm.org.apache.hadoop.fs.FileSystem.getLocal(self._conf).getRawFileSystem()
        return self.path(uri).getFileSystem(self._conf)

    def status(self, uri: str):
        if uri not in self._status:
            fs, p = self.fs(uri), self.path(uri)
            self._status[uri] = fs.getFileStatus(p) if fs.exists(p) else None
        return self._status[uri]

    def exists(self, uri: str) -> bool:
        self._status.pop(uri, None)
        return self.status(uri) is not None

    def files_under(self, uri: str) -> list[str]:
        """The data files under a directory, in the local reader's order (``_``/``.`` skipped)."""
        root = self.path(uri).toUri().getPath().rstrip("/")
        found = []
        it = self.fs(uri).listFiles(self.path(uri), True)
        while it.hasNext():
            p = it.next().getPath()
            rel = PurePosixPath(p.toUri().getPath()[len(root) + 1 :])
            if not any(part.startswith(("_", ".")) for part in rel.parts):
                found.append((rel.parts, p.toString()))
        return [p for _, p in sorted(found)]

    def parquet_footer(self, uri: str) -> tuple[list[str], int, tuple[int, int] | None]:
        """``(column names, rows, declared hash part)`` of a Parquet file, from its footer
        (the part: :func:`~msc_response.study.partitioning.declared`)."""
        path = local_path(uri)
        if path is not None:  # pyarrow: a millisecond; through py4j, a round trip per field
            import pyarrow.parquet as pq

            try:
                meta = pq.read_metadata(path)
            except (OSError, ValueError) as err:  # ArrowInvalid is a ValueError
                raise DataError(
                    [Problem(path.name, None, None, f"cannot read it: {err}")]
                ) from None
            names = meta.schema.to_arrow_schema().names
            return names, meta.num_rows, partitioning.declared(meta.metadata)
        jvm = self._jvm
        source = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
            self.path(uri), self._conf
        )
        reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(source)
        try:
            meta = reader.getFileMetaData()
            names = [f.getName() for f in meta.getSchema().getFields()]
            found = meta.getKeyValueMetaData().get(partitioning.KEY)  # a Java map: one key read
            declared = partitioning.declared({partitioning.KEY: found} if found else None)
            return names, int(reader.getRecordCount()), declared
        finally:
            reader.close()

    def first_line(self, uri: str) -> str:
        jvm = self._jvm
        stream = self.fs(uri).open(self.path(uri))
        try:
            reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
            return reader.readLine() or ""
        finally:
            stream.close()

    def read_bytes(self, uri: str) -> bytes:
        stream = self.fs(uri).open(self.path(uri))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def mkdirs(self, uri: str) -> None:
        self.fs(uri).mkdirs(self.path(uri))

    def rename(self, src: str, dst: str) -> None:
        if not self.fs(src).rename(self.path(src), self.path(dst)):
            raise OSError(f"cannot rename {src!r} to {dst!r}")
        self._status.pop(src, None)
        self._status.pop(dst, None)

    def delete(self, uri: str) -> None:
        self.fs(uri).delete(self.path(uri), True)
        self._status.pop(uri, None)

    def write_bytes(self, uri: str, data: bytes) -> None:
        stream = self.fs(uri).create(self.path(uri), True)
        try:
            stream.write(data)
        finally:
            stream.close()

    def write_text_atomic(self, uri: str, text: str) -> None:
        """Write a small file beside ``uri`` and rename it into place."""
        parent, name = uri.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            self.write_bytes(tmp, text.encode())
            if self.exists(uri):
                self.delete(uri)
            self.rename(tmp, uri)
        finally:
            if self.exists(tmp):
                self.delete(tmp)


class Location:
    """A file or directory on a Hadoop filesystem, with the bit of ``pathlib`` that ``study_files`` and
    :func:`~msc_response.study.files.find_table` uses."""

    def __init__(self, hadoop: Hadoop, uri: str, shown: str | None = None):
        self.hadoop, self.uri, self._shown = hadoop, uri.rstrip("/"), shown

    def __truediv__(self, name: str) -> Location:
        return Location(self.hadoop, f"{self.uri}/{name}")

    def __str__(self) -> str:
        return self._shown if self._shown is not None else self.uri

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def is_file(self) -> bool:
        s = self.hadoop.status(self.uri)
        return s is not None and s.isFile()

    def is_dir(self) -> bool:
        s = self.hadoop.status(self.uri)
        return s is not None and s.isDirectory()


@dataclass(frozen=True)
class Part:
    """A Parquet part file of a table: its URI, rows before it in the table, and the hash
    part its footer declares (None: none)."""

    uri: str
    first_row: int
    declared: tuple[int, int] | None


@dataclass
class SparkTable:
    """One table of the study as a DataFrame (built when first used): ``_row`` and the
    declared columns."""

    name: str
    display: str  # how messages name it (a part directory with a slash)
    is_dir: bool
    make_frame: object  # () -> pyspark DataFrame
    n_rows: int
    row_numbers: str  # where ``_row`` comes from
    columns: list[str] = field(default_factory=list)  # the declared columns read
    parts: list[Part] = field(default_factory=list)  # Parquet only

    @cached_property
    def frame(self):
        return self.make_frame()


@dataclass
class SparkStudy:
    tables: dict[str, SparkTable]
    n_patients: int
    cells_derived: bool
    simulated: bool
    sha256: dict[str, str]
    master: str
    row_numbers: dict[str, str] = field(default_factory=dict)


def find_tables(hadoop: Hadoop, data: str) -> dict[str, Location]:
    """The tables of a study directory, by the local reader's own rule (:func:`~msc_response.study.files.study_files`)."""
    return F.study_files(Location(hadoop, to_uri(data), shown=str(data)))


def _declared(names: list[str], table: str) -> list[str]:
    spec = TABLES[table]
    return [c for c in names if c in (*spec.text, *spec.numeric)]


def read_parquet(spark, hadoop: Hadoop, table: str, loc: Location) -> SparkTable:
    """A Parquet file or part directory, checked like the local reader checks it."""
    from pyspark.sql import functions as Fn
    from pyspark.sql.pandas.types import to_arrow_schema

    display = F.display_name(loc)
    parts = hadoop.files_under(loc.uri) if loc.is_dir() else [loc.uri]
    if not parts:
        raise DataError([Problem(display, None, None, "no Parquet part files in the directory")])
    footers = [hadoop.parquet_footer(p) for p in parts]
    names = footers[0][0]
    check_columns(names, table, display)
    for p, (other, _, _) in zip(parts[1:], footers[1:], strict=True):
        if other != names:
            raise DataError([Problem(display, None, None, (
                f"part {p.rsplit('/', 1)[-1]} has other columns than {parts[0].rsplit('/', 1)[-1]}"))])  # fmt: skip
    declared = _declared(names, table)
    columns = [Fn.col(f"`{c}`") for c in declared]

    def read():
        return spark.read.parquet(*parts).select(
            *columns,
            Fn.col("_metadata.row_index").alias("_index"),
            Fn.col("_metadata.file_path").alias("_file"),
        )

    first_local = local_path(parts[0])
    if (
        first_local is not None
    ):  # the types as the executors' pyarrow (and the local engine) see them
        import pyarrow.parquet as pq

        types = pq.read_schema(first_local).remove_metadata()
    else:  # Spark reads the schema (a few seconds: not for local files)
        types = to_arrow_schema(read().select(*columns).schema)
    normalise(table, types.empty_table().select(declared), display)
    firsts = [0, *itertools.accumulate(n for _, n, _ in footers)]
    listed = [
        Part(p, first, d) for p, first, (_, _, d) in zip(parts, firsts, footers, strict=False)
    ]

    def make_frame():
        frame, row = read(), Fn.col("_index") + 1
        if (
            len(parts) > 1
        ):  # + the rows of the earlier parts, keyed by Spark's own name of each file
            counts = dict(frame.groupBy("_file").count().collect())
            by_path = {unquote(urlparse(k).path): k for k in counts}
            offsets = []
            for part in listed:
                key = by_path.get(unquote(urlparse(part.uri).path))
                if key is not None:
                    offsets.append((key, part.first_row))
            if len(offsets) != len(counts):
                raise RuntimeError(
                    f"{display}: Spark read other part files than listed: {sorted(counts)!r}"
                )
            lookup = spark.createDataFrame(offsets, "_file string, _offset long")
            frame = frame.join(Fn.broadcast(lookup), "_file")
            row = row + Fn.col("_offset")
        return frame.select(row.alias("_row"), *columns)

    how = "Parquet _metadata.row_index" + (" + rows of the earlier parts" if len(parts) > 1 else "")
    return SparkTable(table, display, loc.is_dir(), make_frame, firsts[-1], how, declared, listed)


def read_csv(spark, hadoop: Hadoop, table: str, loc: Location) -> SparkTable:
    """A CSV file with every declared column as text (ids as written), rows numbered."""
    from pyspark.sql import functions as Fn
    from pyspark.sql.types import StringType, StructField, StructType

    display = F.display_name(loc)
    header = hadoop.first_line(loc.uri).lstrip("\ufeff")
    names = next(csv.reader([header])) if header else []
    check_columns(names, table, display)
    schema = StructType(
        [StructField(c, StringType()) for c in names] + [StructField(_UNPARSED, StringType())]
    )
    raw = spark.read.csv(loc.uri, schema=schema, header=True, escape='"', multiLine=False,
                         mode="PERMISSIVE", columnNameOfCorruptRecord=_UNPARSED)  # fmt: skip
    numbered = raw.select("*", Fn.col("_metadata.file_block_start").alias("_block"),
                          Fn.monotonically_increasing_id().alias("_pos"))  # fmt: skip
    bad = Fn.col(_UNPARSED).isNotNull()
    with _every_column_parsed(spark):  # else a row with too many fields is not noticed
        blocks = (numbered.groupBy("_block").agg(
            Fn.count(Fn.lit(1)).alias("n"), Fn.min("_pos").alias("first"),
            Fn.sum(bad.cast("long")).alias("bad"), Fn.min(Fn.when(bad, Fn.col("_pos"))).alias("first_bad"),
            *[Fn.max(Fn.length(Fn.col(f"`{c}`"))) for c in names],  # every column read
        ).orderBy("_block").collect())  # fmt: skip
    deltas, problems, before = [], [], 0
    for b in blocks:
        delta = before - b["first"] + 1  # row = position + delta
        deltas.append((b["_block"], delta))
        if b["bad"]:
            problems.append(Problem(display, int(b["first_bad"] + delta), None, (
                f"cannot parse: the row does not have the header's {len(names)} fields")))  # fmt: skip
        before += b["n"]
    if problems:
        hidden = sum(b["bad"] for b in blocks) - len(problems)
        raise DataError(problems, hidden=hidden)
    lookup = spark.createDataFrame(deltas or [(0, 0)], "_block long, _delta long")
    frame = numbered.join(Fn.broadcast(lookup), "_block").select(
        (Fn.col("_pos") + Fn.col("_delta")).alias("_row"),
        *[Fn.col(f"`{c}`") for c in _declared(names, table)])  # fmt: skip
    return SparkTable(
        table,
        display,
        False,
        lambda: frame,
        before,
        "CSV: position in its split + rows of the earlier splits",
    )


@contextlib.contextmanager
def _every_column_parsed(spark):
    key = "spark.sql.csv.parser.columnPruning.enabled"
    old = spark.conf.get(key, None)
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        if old is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, old)


def read_h5ad_cells(spark, loc: Location, singlecell) -> SparkTable:
    """MX1+ monocyte fractions derived in the driver from ``cells.h5ad`` (a local file)."""
    import numpy as np

    path = local_path(loc.uri)
    if path is None:
        raise DataError([Problem(loc.name, None, None, (
            "the Spark engine reads single-cell data from a local cells.h5ad only; "
            "give the cell fractions as cells.parquet instead"))])  # fmt: skip
    cells = mx1_monocyte_fractions(path, singlecell).drop(columns="n_parent")
    columns = list(cells.columns)
    cells["_row"] = np.arange(1, len(cells) + 1, dtype=np.int64)
    frame = spark.createDataFrame(cells).select("_row", *columns)
    return SparkTable(
        "cells", loc.name, False, lambda: frame, len(cells), "derived in the driver, in table order"
    )


def read_study(spark, hadoop: Hadoop, data: str, singlecell) -> SparkStudy:
    """Find, check and read the tables of ``data``; raises DataError for structural problems."""
    locations = find_tables(hadoop, data)
    tables, cells_derived = {}, False
    for table, loc in locations.items():
        if table == "cells" and loc.name == "cells.h5ad":
            tables[table], cells_derived = read_h5ad_cells(spark, loc, singlecell), True
        elif F.is_parquet(loc):
            tables[table] = read_parquet(spark, hadoop, table, loc)
        else:
            tables[table] = read_csv(spark, hadoop, table, loc)
    if tables["patients"].n_rows == 0:
        raise DataError(
            [Problem(tables["patients"].display, None, None, "no patients in the file")]
        )
    root = to_uri(data)
    local = local_path(root)
    if local is not None:
        simulated = F.is_simulated(local)
        sha = {F.display_name(loc): file_sha256(local_path(loc.uri)) for loc in locations.values()}
    else:
        simulated = _remote_is_simulated(hadoop, root)
        sha = {}
    rows = {t.display: t.row_numbers for t in tables.values()}
    return SparkStudy(tables, tables["patients"].n_rows, cells_derived, simulated, sha,
                      spark.sparkContext.master, rows)  # fmt: skip


@dataclass(frozen=True)
class HashParts:
    """A study whose tables are all hash parts by patient (:mod:`~msc_response.study.partitioning`):
    ``files[table][k]`` is part ``k`` of ``n_parts`` of each table."""

    n_parts: int
    files: dict[str, list[Part]]


def hash_parts(study: SparkStudy) -> HashParts | str:
    """The study's hash parts, or why it has none (then its rows are shuffled).

    Only the footers' declarations are read here; the rows are checked against them when
    the executors read each part (:func:`~msc_response.study.partitioning.misplaced`).
    """
    found, sizes = {}, set()
    for name, table in study.tables.items():
        if not table.parts or not table.is_dir:
            return f"{table.display} is not a directory of Parquet parts"
        if any(p.declared is None for p in table.parts):
            return f"{table.display} has part files that declare no hash part by patient"
        if any(local_path(p.uri) is None for p in table.parts):  # executors read with pyarrow
            return f"{table.display} is not on a local filesystem"
        n = table.parts[0].declared[1]
        by_part = {p.declared[0]: p for p in table.parts if p.declared[1] == n}
        if len(by_part) != len(table.parts) or sorted(by_part) != list(range(n)):
            return f"{table.display}: the part files do not declare parts 0 to {n - 1} once each"
        found[name], sizes = [by_part[k] for k in range(n)], sizes | {n}
    if len(sizes) != 1:
        return f"the tables declare different numbers of hash parts: {sorted(sizes)}"
    return HashParts(sizes.pop(), found)


def _remote_is_simulated(hadoop: Hadoop, root: str) -> bool:
    """:func:`~msc_response.study.files.is_simulated` on a copy of the marker file."""
    import tempfile

    marker = f"{root}/{F.SIMULATION_FILE}"
    if not hadoop.exists(marker):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / F.SIMULATION_FILE).write_bytes(hadoop.read_bytes(marker))
        return F.is_simulated(tmp)


class Target:
    """Where the outputs go: one file (``.csv``/``.parquet``) or a Parquet dataset directory."""

    def __init__(self, out: str, fmt: str):
        self.uri = to_uri(out)
        self.name = self.uri.rsplit("/", 1)[-1]
        self.single_file = fmt in ("csv", "parquet")
        self.local = self.uri.startswith("file:")
        self.parent = self.uri.rsplit("/", 1)[0]

    def check(self, hadoop: Hadoop) -> None:
        """A dataset directory is written only where nothing is: replacing a directory could
        destroy one that is not a previous output (local paths: see ``check_outputs``)."""
        if not self.single_file and not self.local and hadoop.exists(self.uri):
            raise ConfigError(
                f"out: {self.uri!r} exists; the Spark engine writes a dataset directory "
                "only where none is (give a new directory per run; nothing was written)"
            )

    def sibling(self, suffix: str) -> str:
        """:func:`~msc_response.io.sidecar` on the output's filesystem (a directory keeps its whole name)."""
        return sidecar_as_written(self.uri, suffix)

    @contextlib.contextmanager
    def staging(self, hadoop: Hadoop):
        """A temporary directory beside the output; what was written there is moved into
        place when the block ends without error, and the directory is removed either way.

        On a local filesystem it is the local engine's work directory
        (:func:`msc_response.io.work_dir`), so the stage of a job killed outright is
        removed by the next run writing the same output.
        """
        path = local_path(self.uri)
        if path is not None:
            with work_dir(path, option="out") as work:
                stage = _Stage(hadoop, to_uri(str(work)))
                yield stage
                stage.commit()
            return
        stage = _Stage(hadoop, f"{self.parent}/.{self.name}.spark-{uuid.uuid4().hex}")
        hadoop.mkdirs(self.parent)
        try:
            yield stage
            stage.commit()
        finally:
            if hadoop.exists(stage.root):
                hadoop.delete(stage.root)


class _Stage:
    def __init__(self, hadoop: Hadoop, root: str):
        self.hadoop, self.root, self.items = hadoop, root, []

    def write(self, frame, fmt: str, final: str, *, single: bool) -> None:
        """Spark writes ``frame`` (one file with ``single``) under the stage."""
        tmp = f"{self.root}/{len(self.items)}"
        writer = (frame.coalesce(1) if single else frame).write.mode("error")
        if fmt == "csv":  # RFC 4180 quoting; values as they are (Spark trims them by default)
            writer.options(header=True, escape='"', ignoreLeadingWhiteSpace=False,
                           ignoreTrailingWhiteSpace=False).csv(tmp)  # fmt: skip
        else:
            writer.option("compression", "zstd").parquet(tmp)
        if single:
            (tmp,) = self.hadoop.files_under(tmp)
        self.items.append((tmp, final))

    def commit(self) -> None:
        """Each written item renamed onto its final name (a previous one moved aside first)."""
        moved = []
        try:
            for k, (tmp, final) in enumerate(self.items):
                if self.hadoop.exists(final):
                    old = f"{self.root}/previous-{k}"
                    self.hadoop.rename(final, old)
                    moved.append((old, final))
                self.hadoop.rename(tmp, final)
        except Exception:
            for old, final in moved:  # put back what was there (this run's own may be in place)
                if self.hadoop.exists(final):
                    self.hadoop.delete(final)
                self.hadoop.rename(old, final)
            raise
