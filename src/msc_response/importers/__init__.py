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

import datetime as dt
from pathlib import Path

from ..errors import ConfigError, DataError, Problem
from .fhir import import_fhir
from .import_report import build_report, report_markdown
from .mapping import load_mapping
from .sdtm import import_sdtm
from .writer import check_out, write_study

FORMATS = ("sdtm", "fhir")


def parse_index_date(value: str | None) -> dt.date | None:
    """``index_date`` as a date (``YYYY-MM-DD``)."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"index_date: expected a date YYYY-MM-DD, got {value!r}") from None


def import_study(
    source: str | Path,
    out: str | Path,
    *,
    source_format: str,
    mapping: str | Path | None = None,
    index_date: str | None = None,
    strict: bool = False,
    table_format: str = "csv",
) -> dict:
    """Import ``source`` (SDTM domains or FHIR resources) into the study directory ``out``.

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
    index_date : str, optional
        FHIR only: count days from this date for every patient, instead of each patient's
        first MSC administration.
    strict : bool
        Any row problem is an error (nothing written).
    table_format : {"csv", "parquet"}

    Returns
    -------
    dict
        The report (also written as ``import_report.json``).
    """
    fmt = source_format
    if fmt not in FORMATS:
        raise ConfigError(f"source_format: expected one of {list(FORMATS)}, got {fmt!r}")
    if table_format not in ("csv", "parquet"):
        raise ConfigError(f"table_format: expected 'csv' or 'parquet', got {table_format!r}")
    if index_date is not None and fmt != "fhir":
        raise ConfigError("index_date: only for FHIR sources (SDTM counts from the EX records)")
    index = parse_index_date(index_date)
    out = Path(out)
    check_out(out)  # refuse before any work
    maps = load_mapping(mapping, fmt)
    if fmt == "sdtm":
        imported = import_sdtm(source, maps)
    else:
        imported = import_fhir(source, maps, index)
    imported.log.sort()
    problems = [p for _, p in imported.log.problems]
    if strict and problems:
        raise DataError(problems)
    if imported.patients.empty:
        raise DataError(
            problems or [Problem(Path(source).name, None, None, "no patient to import")]
        )
    report = build_report(
        imported, maps, source=Path(source).name, strict=strict, index_date=index_date
    )
    tables = {"patients": imported.patients, "labs": imported.labs, "cells": imported.cells}
    report["files_written"] = [f"{n}.{table_format}" for n, df in tables.items() if df is not None]
    write_study(tables, report, report_markdown(report), out, table_format)
    return report
