"""Writing an imported study directory atomically, and never over what the user had.

The study is written into the output's work directory, a hidden folder beside ``--out``
(:func:`msc_response.io.work_dir`), and renamed into place at the end, so ``--out`` holds
either the previous output or the complete new one. An existing ``--out`` is replaced
only when it is empty or holds nothing but an earlier import's files (its
``import_report.json`` says so); anything else is refused. A work directory left by a
killed import (its process is gone) is removed by the next run writing the same ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..io import check_output_folder, work_dir, write_table
from ..study.partitioning import PartWriter

REPORT_JSON = "import_report.json"
REPORT_MD = "import_report.md"
WRITTEN_BY = "msc-response import"
#: Every file an import may write; an earlier output holds nothing else.
IMPORT_FILES = frozenset({f"{t}.{ext}" for t in ("patients", "labs", "cells") for ext in ("csv", "parquet")}
                         | {REPORT_JSON, REPORT_MD})  # fmt: skip
#: Part directories an import may write (``parts``), each holding only part files.
IMPORT_DIRS = frozenset({"patients", "labs", "cells"})


def _is_earlier_import(out: Path) -> bool:
    try:
        report = json.loads((out / REPORT_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    names = {p.name for p in out.iterdir() if not (p.name in IMPORT_DIRS and p.is_dir())}
    return (
        isinstance(report, dict)
        and report.get("written_by") == WRITTEN_BY
        and names <= IMPORT_FILES
    )


def check_parts(parts: int, table_format: str) -> None:
    """``parts`` is a whole number >= 0, and only with Parquet."""
    if type(parts) is not int or parts < 0:
        raise ConfigError(f"parts: expected a whole number >= 0, got {parts!r}")
    if parts and table_format != "parquet":
        raise ConfigError(f"parts: part files are Parquet; give table_format='parquet' "
                          f"(--format parquet), got {table_format!r}")  # fmt: skip


def check_out(out: Path, source: Path | None = None) -> None:
    """Refuse an ``--out`` that would destroy what the user had (a file, a foreign non-empty
    folder, the ``source`` or a folder inside it): :func:`msc_response.io.check_output_folder`."""
    check_output_folder(out, inputs=[] if source is None else [source], option="out",
                        previous=_is_earlier_import, kind="an earlier import's output")  # fmt: skip


def write_study(
    tables: dict, report: dict, markdown: str, out: Path, fmt: str, parts: int = 0
) -> list[Path]:
    """Write ``tables`` (name -> DataFrame or None), the report and its table into ``out``, atomically.

    ``parts``: each table as that many Parquet part files by a hash of ``patient_id``
    (:class:`~msc_response.study.partitioning.PartWriter`).
    """
    check_out(out)
    with work_dir(out, option="out") as work:
        tmp = work / "new"
        tmp.mkdir()
        names = []
        for name, df in tables.items():
            if df is None:
                continue
            if parts:
                writer = PartWriter(tmp / name, parts)
                writer.write(df)
                writer.close()
                names.append(name)
            else:
                write_table(df, tmp / f"{name}.{fmt}")
                names.append(f"{name}.{fmt}")
        (tmp / REPORT_JSON).write_text(
            json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
        )
        (tmp / REPORT_MD).write_text(markdown)
        names += [REPORT_JSON, REPORT_MD]
        if out.exists():  # empty, or an earlier import's output (checked above)
            old = work / "old"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    return [out / n for n in names]
