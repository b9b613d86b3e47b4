"""Units of the laboratory tests and conversion to the canonical units the scores use.

Conversion factors follow the domain reference (``docs/domain.md``):
bilirubin umol/L = mg/dL x 17.1; creatinine umol/L = mg/dL x 88.4;
albumin g/L = g/dL x 10; sodium mmol/L = mEq/L.

Prothrombin activity (PTA, %) has no standard conversion to INR: it is never
converted and stays a feature of its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The canonical unit of every test the scores need.
CANONICAL_UNITS: dict[str, str] = {
    "bilirubin": "mg/dL",
    "albumin": "g/dL",
    "inr": "ratio",
    "pt": "s",
    "pt_control": "s",
    "creatinine": "mg/dL",
    "sodium": "mmol/L",
    "ascites": "grade",
    "encephalopathy": "grade",
    "dialysis": "flag",
}

#: Multiply a value in ``unit`` by this factor to get the canonical unit.
_TO_CANONICAL: dict[str, dict[str, float]] = {
    "bilirubin": {"mg/dL": 1.0, "umol/L": 1 / 17.1},
    "albumin": {"g/dL": 1.0, "g/L": 1 / 10},
    "inr": {"ratio": 1.0},
    "pt": {"s": 1.0},
    "pt_control": {"s": 1.0},
    "creatinine": {"mg/dL": 1.0, "umol/L": 1 / 88.4},
    "sodium": {"mmol/L": 1.0, "mEq/L": 1.0},
    "ascites": {"grade": 1.0},
    "encephalopathy": {"grade": 1.0},
    "dialysis": {"flag": 1.0},
}

#: Known tests (the ones scores use).
KNOWN_TESTS = frozenset(CANONICAL_UNITS)

#: Other common tests whose values cannot be negative (counts, concentrations, activities).
#: A negative value of one of these is a row problem; any other test the project does not
#: know need only be a finite number (some, like base excess, can be negative).
NONNEGATIVE_TESTS = frozenset({
    "platelets", "alt", "ast", "alp", "ggt", "pta", "wbc", "rbc", "hemoglobin", "hematocrit",
    "neutrophils", "lymphocytes", "monocytes", "afp", "crp", "ferritin", "ammonia", "ldh",
    "bun", "urea", "potassium", "chloride", "glucose", "cholesterol", "triglycerides",
    "hbv_dna", "hcv_rna", "il6", "il15", "cldq",
})  # fmt: skip


def cannot_be_negative(test: str) -> bool:
    """True for a test whose values cannot be negative (see :data:`NONNEGATIVE_TESTS`)."""
    return test in KNOWN_TESTS or test.strip().lower() in NONNEGATIVE_TESTS


class UnitError(ValueError):
    """A unit that is not accepted for a test."""


def accepted_units(test: str) -> list[str]:
    """The unit strings accepted for a known ``test``."""
    if test not in _TO_CANONICAL:
        raise UnitError(f"unknown test {test!r}; known tests: {sorted(_TO_CANONICAL)}")
    return list(_TO_CANONICAL[test])


def factor_to_canonical(test: str, unit: str) -> float:
    """Factor that converts ``test`` measured in ``unit`` to its canonical unit.

    Raises
    ------
    UnitError
        If ``unit`` is not accepted for ``test``; the message names both.
    """
    units = _TO_CANONICAL.get(test)
    if units is None:
        raise UnitError(f"unknown test {test!r}; known tests: {sorted(_TO_CANONICAL)}")
    if unit not in units:
        raise UnitError(f"unknown unit {unit!r} for test {test!r}; accepted: {list(units)}")
    return units[unit]


def convert(values, test: str, from_unit: str, to_unit: str | None = None):
    """Convert ``values`` of ``test`` from ``from_unit`` to ``to_unit`` (canonical by default).

    Works on scalars, numpy arrays and pandas Series alike.

    Examples
    --------
    >>> convert(34.2, "bilirubin", "umol/L")
    2.0
    >>> round(convert(2.0, "creatinine", "mg/dL", "umol/L"), 1)
    176.8
    """
    to_unit = CANONICAL_UNITS.get(test) if to_unit is None else to_unit
    factor = factor_to_canonical(test, from_unit) / factor_to_canonical(test, to_unit)
    return values * factor if factor != 1.0 else values


def factor_table(test_names, unit_names) -> np.ndarray:
    """The factors of :func:`factors_for` as a small (tests x units) table, indexed by category
    codes: code -1 (missing) indexes the last row or column, which is NaN."""
    table = np.full((len(test_names) + 1, len(unit_names) + 1), np.nan)
    for i, test in enumerate(test_names):
        known = _TO_CANONICAL.get(str(test))
        for j, unit in enumerate(unit_names):
            table[i, j] = 1.0 if known is None else known.get(str(unit), np.nan)
    return table


def factors_for(tests: pd.Series, units: pd.Series) -> np.ndarray:
    """Vectorised conversion factors for known tests.

    Returns NaN where a known test has a unit that is not accepted, and 1.0 for
    tests this module does not know (those keep the site's unit).

    Parameters
    ----------
    tests, units : Series of str (or categorical)
        Test names and unit strings of the same rows.
    """
    tests = tests.astype("category")
    units = units.astype("category")
    table = factor_table(list(tests.cat.categories), list(units.cat.categories))
    return table[tests.cat.codes.to_numpy(), units.cat.codes.to_numpy()]
