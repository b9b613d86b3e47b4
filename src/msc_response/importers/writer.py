"""Writing an imported study directory atomically, and never over what the user had.

The study is written into a hidden temporary folder beside ``--out``
(``.NAME.import-PID-*``) and renamed into place at the end, so ``--out`` holds either
the previous output or the complete new one. An existing ``--out`` is replaced only when
it is empty or holds nothing but an earlier import's files (its ``import_report.json``
says so); anything else is refused. A temporary folder left by a killed import (its
process is gone) is removed by the next import to the same ``--out``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..io import write_table

REPORT_JSON = "import_report.json"
REPORT_MD = "import_report.md"
WRITTEN_BY = "msc-response import"
#: Every file an import may write; an earlier output holds nothing else.
IMPORT_FILES = frozenset({f"{t}.{ext}" for t in ("patients", "labs", "cells") for ext in ("csv", "parquet")}
                         | {REPORT_JSON, REPORT_MD})  # fmt: skip


def _is_earlier_import(out: Path) -> bool:
    try:
        report = json.loads((out / REPORT_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    names = {p.name for p in out.iterdir()}
    return (
        isinstance(report, dict)
        and report.get("written_by") == WRITTEN_BY
        and names <= IMPORT_FILES
    )


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that would destroy what the user had (a file, a foreign non-empty folder)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_earlier_import(out):
        held = sorted(p.name for p in out.iterdir())[:5]
        raise ConfigError(
            f"--out: {str(out)!r} is not empty and is not an earlier import's output (it holds "
            f"{held}); choose an empty or new folder - nothing is replaced"
        )


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary folders of earlier imports to ``out`` whose process no longer runs."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.import-(\d+)-")
    if not out.parent.is_dir():
        return
    for p in out.parent.iterdir():
        m = pattern.match(p.name)
        if m is None or not p.is_dir():
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass  # the process exists (another user's): leave it


def _new_temporary(out: Path, role: str) -> Path:
    """A new hidden folder beside ``out`` (mode from the umask, like the folder it becomes)."""
    path = out.parent / f".{out.name}.import-{os.getpid()}-{role}-{secrets.token_hex(4)}"
    path.mkdir()
    return path


def write_study(tables: dict, report: dict, markdown: str, out: Path, fmt: str) -> list[Path]:
    """Write ``tables`` (name -> DataFrame or None), the report and its table into ``out``, atomically."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = _new_temporary(out, "new")
    try:
        names = []
        for name, df in tables.items():
            if df is not None:
                write_table(df, tmp / f"{name}.{fmt}")
                names.append(f"{name}.{fmt}")
        (tmp / REPORT_JSON).write_text(
            json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
        )
        (tmp / REPORT_MD).write_text(markdown)
        names += [REPORT_JSON, REPORT_MD]
        if out.exists():  # empty, or an earlier import's output (checked above)
            old = _new_temporary(out, "old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / n for n in names]
