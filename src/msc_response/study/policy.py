"""What a row problem means for a verb: the one policy for bad rows.

A bad row is never used. Whether it matters depends on what the config reads: a lab or
cell row whose day lies outside every window (baseline, follow-up, landmark), and a lab
row of a test that no feature, label, score or assumption of the config reads
(:attr:`Windows.tests`), would not have been used anyway, so it is listed and counted but
rejects nobody. A problem that matters (in a window of a test that is read, a day or test
that could not be read, any problem of a patients row):

- ``"exclude"`` (scoring's default; training's ``--exclude-bad-patients``): the patient
  whose row it is is excluded, with the first such problem as the reason; rows of ids
  that are not in the patients table are listed and counted (they belong to no patient).
- ``"error"`` (training's default, scoring's ``--strict``): the run stops with every
  problem that matters (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .problems import shown_by_rule

POLICIES = ("error", "exclude")


@dataclass(frozen=True)
class Windows:
    """What a config reads: the day ranges (inclusive) of the labs and cells tables, and the
    lab tests (None: every test)."""

    labs: tuple[tuple[int, int], ...]
    cells: tuple[tuple[int, int], ...]
    tests: frozenset[str] | None = None  # names as :func:`test_key` gives them

    def reads_test(self, tests) -> np.ndarray:
        """Per test name (as written), whether the config reads it; a missing name: yes."""
        names = pd.Series(tests, dtype=object)
        if self.tests is None:
            return np.ones(len(names), dtype=bool)
        missing = names.isna().to_numpy()
        return missing | names.where(~missing, "").map(test_key).isin(self.tests).to_numpy()


def test_key(name: str) -> str:
    """A test name as a config's reading compares it: case and surrounding spaces ignored."""
    return str(name).strip().lower()


def mark_in_use(problems: pd.DataFrame, windows: Windows, files: dict[str, str]) -> pd.DataFrame:
    """``problems`` with ``test_read`` (the row's test is one the config reads, or not a lab
    row) and ``in_window``: the row lies where the config reads (or cannot tell) and its
    test is read - the problem matters."""
    table_of = {name: table for table, name in files.items()}
    table = problems["file"].map(table_of).to_numpy()
    day = problems["day"].to_numpy(dtype=float)
    inside = np.isnan(day) | (table == "patients")
    for name, ranges in (("labs", windows.labs), ("cells", windows.cells)):
        for lo, hi in ranges:
            inside |= (table == name) & (day >= lo) & (day <= hi)
    test_read = (table != "labs") | windows.reads_test(problems["test"])
    return problems.assign(test_read=test_read, in_window=inside & test_read)


def apply(problems: pd.DataFrame, policy: str, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """The reason each patient is excluded for bad rows and its flow category (None: not excluded).

    Raises
    ------
    DataError
        With policy ``"error"``, when any problem matters.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICIES}, got {policy!r}")
    matters = problems[problems["in_window"]]
    if policy == "error" and len(matters):
        shown, hidden = shown_by_rule(matters)
        raise DataError(shown, table=matters, hidden=hidden)
    reasons = np.full(n_patients, None, dtype=object)
    categories = np.full(n_patients, None, dtype=object)
    of_patient = matters[matters["pidx"] >= 0]
    if len(of_patient):
        first = of_patient.drop_duplicates("pidx")  # file and row order: the first problem
        count = of_patient["pidx"].value_counts()
        for r in first.itertuples(index=False):
            more = int(count[r.pidx]) - 1
            where = f"{r.file}, row {r.row}" + (
                f", column {r.column!r}" if isinstance(r.column, str) else ""
            )
            reasons[r.pidx] = f"{where}: {r.message}" + (
                f" (and {more} more problem(s))" if more else ""
            )
            categories[r.pidx] = reason_category(r.rule)
    return reasons, categories


def reason_category(rule: str) -> str:
    """The flow box's line for patients excluded for a rule."""
    return f"bad data: {rule}"
