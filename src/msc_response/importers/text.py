"""Reading text of unknown encoding: SAS files and CSV tables from sites.

Without ``--encoding`` a file is read in its declared encoding (SAS files declare one;
CSV does not, so UTF-8) and, when that fails, in Latin-1 - which decodes any byte, and
is what SAS on Windows usually writes - with a note for the report. With ``--encoding``
only that encoding is tried. Only the variables an import uses are decoded, so an
undecodable byte in a comment or label is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..study.files import misshapen_csv_line

FALLBACK_ENCODING = "latin1"


def is_decoding_error(err: Exception) -> bool:
    """True for an error that says text could not be decoded (pyreadstat words it its own way)."""
    return isinstance(err, UnicodeDecodeError) or any(
        w in str(err).lower() for w in ("decod", "encod", "conver", "charset", "utf")
    )


def with_fallback(read: Callable[[str | None], pd.DataFrame], encoding: str | None,
                  errors: tuple[type[Exception], ...] = ()) -> tuple[pd.DataFrame, str | None]:  # fmt: skip
    """``read(encoding)``, retried in Latin-1 when no encoding was given and decoding failed."""
    try:
        return read(encoding), None
    except (UnicodeDecodeError, *errors) as err:
        if encoding is not None or not is_decoding_error(err):
            raise
        note = (f"not readable in its declared encoding or UTF-8 ({err}); read as Latin-1 "
                "(give --encoding to choose)")  # fmt: skip
        return read(FALLBACK_ENCODING), note


def used_columns(names, needed: set[str] | None) -> list[str] | None:
    """The columns of ``names`` (as written) whose upper-case name is in ``needed`` (None: all)."""
    if needed is None:
        return None
    return [n for n in names if str(n).strip().upper() in needed]


def csv_header(path: Path, encoding: str | None) -> list[str]:
    """The column names as written (pandas would rename a repeated one, hiding it)."""
    head = pd.read_csv(path, dtype=str, header=None, nrows=1, keep_default_na=False,
                       encoding=encoding or "utf-8")  # fmt: skip
    return [str(v) for v in head.iloc[0].tolist()]


def read_csv_text(path: Path, encoding: str | None, needed: set[str] | None = None,
                  check_names: Callable[[list[str]], None] | None = None) -> tuple[pd.DataFrame, str | None]:  # fmt: skip
    """A CSV file with every cell as text (``001`` stays ``001``), and the encoding note."""

    def read(enc):
        names = csv_header(path, enc)
        if check_names is not None:
            check_names(names)
        keep = used_columns(names, needed)
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding=enc or "utf-8", usecols=keep
        )
        misshapen = misshapen_csv_line(path, enc)
        if misshapen is not None:
            raise ValueError(misshapen)
        return df[[n for n in names if keep is None or n in keep]]

    return with_fallback(read, encoding)
