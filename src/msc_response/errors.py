"""The project's one error type for bad input data, and its warning category.

Every reader and validator collects *all* problems it finds into :class:`DataError`
before raising, so a site sees every fix it has to make at once. The CLI prints
them and exits with status 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A patient id quoted in a problem's message (``patient_id 'P9' is not in ...``), as ``!r``
#: writes it: in single quotes, or in double quotes when the id holds a single quote.
_QUOTED_PATIENT_ID = re.compile(r"""(patient_id) (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


class MscResponseWarning(UserWarning):
    """Warnings raised by msc-response itself (tests treat them as errors)."""


@dataclass(frozen=True)
class Problem:
    """One problem in an input file.

    Parameters
    ----------
    file : str
        File name (not the whole path: paths may contain site names).
    row : int or None
        1-based data row (the header is not counted; in a CSV, line = row + 1).
    column : str or None
        Column the problem is in, if it is about one column.
    message : str
        What is wrong, showing the bad value with ``!r``.
    """

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}"


class DataError(Exception):
    """Bad input data: carries every :class:`Problem` found.

    Row problems can be many: then ``problems`` are the ones shown (the first of each
    kind), ``hidden`` counts the rest and ``table`` holds them all (a DataFrame with
    file, row, column, patient_id, rule, message), for the caller to write out.
    """

    def __init__(self, problems: list[Problem], *, limit: int = 50, table=None, hidden: int = 0):
        if not problems:
            raise ValueError("DataError needs at least one problem")
        self.problems, self.table, self.hidden = list(problems), table, hidden
        shown = "\n".join(f"  - {p}" for p in self.problems[:limit])
        more = self.n_problems - min(limit, len(self.problems))
        if more:
            shown += f"\n  ... and {more} more"
        super().__init__(f"{self.n_problems} problem(s) in the input:\n{shown}")

    def console_text(self) -> str:
        """The error for a console line: each problem by file, row and column, with the
        patient ids its messages quote left out (they stay in the problem files the verbs
        write, which the site owns; a console line can end up in a shared log)."""
        return "\n".join(_QUOTED_PATIENT_ID.sub(r"\1", line) for line in str(self).split("\n"))

    @property
    def n_problems(self) -> int:
        """Every problem found, shown or not."""
        return len(self.problems) + self.hidden

    def __reduce__(self):
        # rebuilt from the problems (not the message) when it crosses a process boundary
        return (_rebuild_data_error, (self.problems, self.table, self.hidden))


def _rebuild_data_error(problems, table, hidden):
    return DataError(problems, table=table, hidden=hidden)


class ConfigError(ValueError):
    """A bad experiment configuration; the message names the key."""
