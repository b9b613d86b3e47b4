"""What an import writes is a valid study: checked by the project's own reader before writing.

The importers apply the rules they know (units, duplicates, days); the study reader
(:func:`msc_response.study.reader.study_from_frames`) is the one judge of the contract.
Every row or patient it would reject is not written: the row keeps the reader's rule as
its reason and is listed with its source file, row and column, so ``import`` never writes
what a later verb would refuse. A study with nothing a model could read - no lab row, or
no patient with a contract test - is not written at all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .. import units
from ..errors import DataError, Problem
from ..study.reader import study_from_frames
from .rows import OK, Imported, row_problem

#: The table names the reader is given, so its problems say which table they are in.
_FILES = {"patients": Path("patients"), "labs": Path("labs"), "cells": Path("cells")}
#: The column of the candidate rows that holds the source column of a reader's column.
_SOURCE_COLUMN = {"unit": "unit_col"}


def _written(rows, kind: str) -> np.ndarray:
    """Positions in ``rows`` of the rows written to the ``kind`` table, in table order."""
    return np.flatnonzero(((rows["status"] == OK) & (rows["kind"] == kind)).to_numpy())


def keep_valid(imp: Imported, passes: int = 3) -> None:
    """Leave out of ``imp`` every patient and row the study reader rejects (in place)."""
    for _ in range(passes):
        study = study_from_frames(imp.patients, imp.labs, imp.cells, files=_FILES)
        found = study.problems
        if found.empty:
            return
        rows = imp.rows
        bad_patients = found[found["file"] == "patients"]
        for r in bad_patients.itertuples(index=False):
            imp.log.add(f"rejected by the study contract: {r.rule}", Problem(
                "patients (as imported)", int(r.row), r.column,
                f"{r.message}; the patient is not written"))  # fmt: skip
        gone = set(imp.patients["patient_id"].iloc[bad_patients["row"].astype(int) - 1])
        for table, kind in (("labs", "lab"), ("cells", "cells")):
            at = _written(rows, kind)
            reject = np.zeros(len(at), dtype=bool)
            for r in found[found["file"] == table].itertuples(index=False):
                i = int(at[int(r.row) - 1])
                reason = f"rejected by the study contract: {r.rule}"
                imp.log.add(
                    reason,
                    row_problem(rows, i, _SOURCE_COLUMN.get(r.column, "value_col"), r.message),
                )
                rows.iloc[i, rows.columns.get_loc("status")] = reason
                reject[int(r.row) - 1] = True
            of_gone = rows["patient_id"].iloc[at].isin(gone).to_numpy() & ~reject
            imp.log.skipped["rows of a patient rejected by the study contract"] += int(
                of_gone.sum()
            )
            rows.iloc[at[of_gone], rows.columns.get_loc("status")] = (
                "patient rejected by the study contract"
            )
            frame = getattr(imp, table)
            if frame is not None:
                setattr(imp, table, frame[~(reject | of_gone)].reset_index(drop=True))
        imp.patients = imp.patients[~imp.patients["patient_id"].isin(gone)].reset_index(drop=True)
    raise RuntimeError("the import's tables still break the study contract after leaving out every "
                       "rejected row; this is a bug - please report it")  # fmt: skip


def nothing_imported(imp: Imported, source: str) -> None:
    """Stop (DataError, nothing written) when no model could use what would be written."""
    with_test = imp.labs.loc[imp.labs["test"].isin(units.KNOWN_TESTS), "patient_id"].nunique()
    if len(imp.patients) and len(imp.labs) and with_test:
        return
    reasons = Counter(reason for reason, _ in imp.log.problems)
    reasons.update({k: v for k, v in imp.log.skipped.items() if v})
    counted = "; ".join(f"{k}: {v}" for k, v in reasons.most_common()) or "no row was read"
    raise DataError([Problem(source, None, None, (
        f"nothing to import: {len(imp.patients)} patients, {len(imp.labs)} lab rows, {with_test} patients "
        f"with a contract test ({', '.join(sorted(units.KNOWN_TESTS))}). Rows not imported, by reason: {counted}"
    ))])  # fmt: skip
