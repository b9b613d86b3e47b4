"""Problem collection: every problem in a study's rows, kept as a table.

A **structural** problem (a missing file or column, an unreadable file, a table in two
formats, duplicate patient ids) makes the study unreadable: it is raised at once as a
:class:`~msc_response.errors.DataError`. A **row** problem (a non-number, an implausible
value, an unknown unit, a conflicting duplicate, an unknown patient, a day that is not a
whole number) makes one row unusable: it is recorded in a :class:`ProblemLog` with the
file, the 1-based row, the column, the patient and the day of the row, the row is never
used, and the verb's policy (:mod:`msc_response.study.policy`) decides whether the
patient is quarantined or the run stops. There is no cap: a study with a million bad
rows has a million entries (kept as columns, not as objects).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .. import plausible, units
from ..errors import Problem

#: Columns of a problem table.
#: ``test``: the lab test of the row, as written (None for other tables, or where unreadable).
PROBLEM_COLUMNS = ["file", "row", "column", "patient_id", "pidx", "day", "test", "rule", "message"]

#: Row problems shown per rule in a message (the rest are counted; the full list is a file).
SHOWN_PER_RULE = 10


class CodedText:
    """A text column as codes into its categories (-1: missing), read as strings only where
    asked: a problem's row, or a message's cell - never a million Python strings per chunk.

    ``values[i]`` is the string at position ``i`` (NaN where missing, as a categorical's
    ``astype(object)`` gives), ``values[positions]`` an object array of them.
    """

    def __init__(self, codes: np.ndarray, categories) -> None:
        self.codes = np.asarray(codes)
        self._lookup = np.append(np.asarray(categories, dtype=object), np.nan)  # -1: the NaN

    @classmethod
    def of(cls, values: pd.Series) -> CodedText:
        """The strings of a categorical series."""
        return cls(values.cat.codes.to_numpy(), values.cat.categories.to_numpy(dtype=object))

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, at):
        return self._lookup[self.codes[at]]

    def subset(self, mask: np.ndarray) -> CodedText:
        """The rows where ``mask`` is true."""
        out = CodedText.__new__(CodedText)
        out.codes, out._lookup = self.codes[mask], self._lookup
        return out


class ProblemLog:
    """Row problems of one study (or one chunk of it), collected in vectorised batches."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(
        self,
        file: str,
        column: str | None,
        rule: str,
        mask,
        message: Callable[[int], str] | str,
        *,
        rows=None,
        patient_ids=None,
        pidx=None,
        days=None,
        tests=None,
    ) -> None:
        """Record one problem for every position where ``mask`` is true.

        ``rows``, ``patient_ids``, ``pidx``, ``days`` and ``tests`` are arrays over the table's
        positions (``rows``: the 1-based row of the file; default position + 1).
        ``message(i)`` gives the text for position ``i``.
        """
        mask = np.asarray(mask)
        if not mask.any():  # the usual case: one quick scan, no index array
            return
        at = np.flatnonzero(mask)
        text = [message(int(i)) for i in at] if callable(message) else [message] * len(at)

        def pick(values, fill):
            if values is None:
                return np.full(len(at), fill, dtype=object if fill is None else None)
            return values[at] if isinstance(values, CodedText) else np.asarray(values)[at]

        self._parts.append(
            pd.DataFrame({
                "file": file,
                "row": (at + 1) if rows is None else np.asarray(rows)[at],
                "column": column,
                "patient_id": pick(patient_ids, None),
                "pidx": pick(pidx, -1).astype(np.int64),
                "day": pick(days, np.nan).astype(float),
                "test": pick(tests, None),
                "rule": rule,
                "message": text,
            })
        )  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self._parts)

    def frame(self) -> pd.DataFrame:
        """Every problem, in file and row order."""
        if not self._parts:
            return empty_problems()
        out = pd.concat(self._parts, ignore_index=True)
        order = np.lexsort((out["row"].to_numpy(), pd.factorize(out["file"])[0]))
        return out.iloc[order].reset_index(drop=True)  # files in reading order, rows within


def empty_problems() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(PROBLEM_COLUMNS,
                         (object, np.int64, object, object, np.int64, float, object, object, object),
                         strict=True)})  # fmt: skip


def as_problems(table: pd.DataFrame) -> list[Problem]:
    """The rows of a problem table as :class:`Problem` objects."""
    return [
        Problem(r.file, None if pd.isna(r.row) else int(r.row),
                None if r.column is None or pd.isna(r.column) else r.column, r.message)
        for r in table.itertuples(index=False)
    ]  # fmt: skip


def shown_by_rule(table: pd.DataFrame, per_rule: int = SHOWN_PER_RULE) -> tuple[list[Problem], int]:
    """The first ``per_rule`` problems of each rule (in row order) and how many are not shown."""
    shown = table.groupby("rule", sort=False, group_keys=False).head(per_rule)
    return as_problems(shown.sort_index()), len(table) - len(shown)


def counts_by_rule(table: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in table["rule"].value_counts().sort_index().items()}


# ----------------------------------------------------------------------------------------
# small helpers shared by the validators and the visit table


def py(value):
    """A numpy scalar as the plain Python value, so messages show ``38.0``, not ``np.float64(38.0)``."""
    return value.item() if isinstance(value, np.generic) else value


def row_numbers(df: pd.DataFrame):
    """The original 1-based row numbers a chunk carries in ``_row`` (or None)."""
    return df["_row"].to_numpy() if "_row" in df.columns else None


def unit_hint(test: str, value: float, unit: str) -> str:
    """ ", looks like <unit>" when the value would be plausible in another accepted unit."""
    suggestion = plausible.suggest_unit(test, value / units.factor_to_canonical(test, unit))
    if suggestion is not None and suggestion != unit:
        return f"; a value of this size looks like {suggestion}, not {unit}"
    return ""


def required_columns(columns, file: str, required) -> list[Problem]:
    """A structural problem for every required column that is missing."""
    present = set(columns)
    return [
        Problem(file, None, c, "required column is missing") for c in required if c not in present
    ]
