"""Sites' own formats in: CDISC SDTM and FHIR R4 turned into a study directory.

:func:`import_study` reads a source (:mod:`.sdtm` or :mod:`.fhir`), maps its codes
(:mod:`.mapping`), applies the shared row rules (:mod:`.rows`) and writes the study with
its mapping report (:mod:`.import_report`) atomically (:mod:`.writer`).

Bad input follows the policy of the study reader: a structural problem (a required
domain, resource type or variable missing, an unreadable file) raises
:class:`~msc_response.errors.DataError` and nothing is written. A row problem leaves that
row out and lists it in the report with its file, row and column (FHIR: the resource and
element) and reason; with ``strict=True`` any row problem raises instead, and nothing is
written.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .. import progress
from ..errors import ConfigError, DataError
from .contract import keep_valid, nothing_imported
from .fhir import import_fhir
from .import_report import build_report, report_markdown
from .index import index_rules
from .mapping import load_mapping
from .sdtm import import_sdtm
from .writer import check_out, check_parts, write_study

FORMATS = ("sdtm", "fhir")


def import_study(
    source: str | Path,
    out: str | Path,
    *,
    source_format: str,
    mapping: str | Path | None = None,
    index_date: str | None = None,
    index_dates: str | Path | None = None,
    index_event: str | None = None,
    encoding: str | None = None,
    strict: bool = False,
    table_format: str = "csv",
    parts: int = 0,
) -> dict:
    """Import ``source`` (SDTM domains or FHIR resources) into the study directory ``out``.

    What is written is a valid study by construction: the project's own reader checks
    the tables before they are written, and a row it would reject is not written but
    listed (see :func:`.contract.keep_valid`).

    Parameters
    ----------
    source : path
        SDTM: a folder of domain files. FHIR: a folder of ``.json`` (Bundles or single
        resources) and ``.ndjson`` files, or one such file.
    out : path
        The study directory to write (must be new, empty, or an earlier import's output).
    source_format : {"sdtm", "fhir"}
    mapping : path, optional
        A mapping file (YAML) that adds to the default mappings.
    index_date, index_dates, index_event : optional
        FHIR only: how day 0 is set per patient when the first MSC administration does
        not (see :mod:`.index`): one date for everyone, a ``patient_id,index_date``
        CSV file, or ``SYSTEM|CODE`` of the first resource carrying that code.
    encoding : str, optional
        The text encoding of ``.xpt``, ``.sas7bdat`` and CSV files (default: the file's
        declared encoding or UTF-8, then Latin-1 with a note in the report).
    strict : bool
        Any row problem is an error (nothing written).
    table_format : {"csv", "parquet"}
    parts : int
        With Parquet: each table as a directory of this many part files by a hash of
        ``patient_id`` (:mod:`~msc_response.study.partitioning`); 0: one file each.

    Returns
    -------
    dict
        The report (also written as ``import_report.json``).

    Raises
    ------
    DataError
        A structural problem, or nothing to import (no lab row, or no patient with a
        contract test): the reasons are counted.
    """
    fmt = source_format
    if fmt not in FORMATS:
        raise ConfigError(f"source_format: expected one of {list(FORMATS)}, got {fmt!r}")
    if table_format not in ("csv", "parquet"):
        raise ConfigError(f"table_format: expected 'csv' or 'parquet', got {table_format!r}")
    check_parts(parts, table_format)
    for name, value in (
        ("index_date", index_date),
        ("index_dates", index_dates),
        ("index_event", index_event),
    ):
        if value is not None and fmt != "fhir":
            raise ConfigError(
                f"{name}: only for FHIR sources (SDTM counts from the EX records), got {str(value)!r}"
            )
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"encoding: unknown text encoding {encoding!r}") from None
    out = Path(out)
    check_out(out, Path(source))  # refuse before any work
    rules = index_rules(index_date, index_dates, index_event, encoding=encoding)
    maps = load_mapping(mapping, fmt)
    with progress.task(f"reading {fmt.upper()} from {Path(source).name}"):
        if fmt == "sdtm":
            imported = import_sdtm(source, maps, encoding)
        else:
            imported = import_fhir(source, maps, rules)
    keep_valid(imported)
    imported.log.sort()
    problems = [p for _, p in imported.log.problems]
    if strict and problems:
        raise DataError(problems)
    nothing_imported(imported, Path(source).name)
    report = build_report(imported, maps, source=Path(source).name, strict=strict)
    tables = {"patients": imported.patients, "labs": imported.labs, "cells": imported.cells}
    report["files_written"] = [f"{n}/" if parts else f"{n}.{table_format}"
                               for n, df in tables.items() if df is not None]  # fmt: skip
    with progress.task(f"writing the study to {out}"):
        write_study(tables, report, report_markdown(report), out, table_format, parts)
    return report
