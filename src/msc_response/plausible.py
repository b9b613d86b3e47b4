"""Plausible values of the known laboratory tests, and the one way to say what they are.

The study reader (each lab row), the visit table of ``msc-response scores`` (each cell)
and the config (``assume`` values) all check a value against :data:`RANGES` and say what
was expected with :func:`expected`, so a reader meets one wording wherever the value was
written: ``albumin value 38.0 g/dL is not plausible (expected within 0.5-7 g/dL)``.
"""

from __future__ import annotations

from .units import CANONICAL_UNITS, accepted_units, factor_to_canonical

#: Physiologically plausible range of each known test, in canonical units (inclusive).
RANGES: dict[str, tuple[float, float]] = {
    "bilirubin": (0.05, 80.0),
    "albumin": (0.5, 7.0),
    "inr": (0.5, 15.0),
    "pt": (5.0, 200.0),
    "pt_control": (8.0, 20.0),
    "creatinine": (0.1, 25.0),
    "sodium": (100.0, 180.0),
    "ascites": (0, 2),
    "encephalopathy": (0, 4),
    "dialysis": (0, 1),
}

#: Tests whose values must be whole numbers (grades and flags).
WHOLE_NUMBER_TESTS = frozenset({"ascites", "encephalopathy", "dialysis"})


def expected(test: str) -> str:
    """What a plausible value of a known ``test`` is, in canonical units.

    Examples
    --------
    >>> expected("albumin"), expected("ascites")
    ('within 0.5-7 g/dL', 'a whole grade 0-2')
    """
    low, high = RANGES[test]
    unit = CANONICAL_UNITS[test]
    if test in WHOLE_NUMBER_TESTS:
        return f"a whole {unit} {int(low)}-{int(high)}"
    return f"within {low:g}-{high:g} {unit}"


def is_plausible(test: str, value: float) -> bool:
    """True when ``value`` (canonical units) of a known ``test`` is in its range (and whole, if it must be)."""
    low, high = RANGES[test]
    whole = test not in WHOLE_NUMBER_TESTS or float(value).is_integer()
    return low <= value <= high and whole


def suggest_unit(test: str, value: float) -> str | None:
    """The accepted unit under which ``value`` of ``test`` would be plausible, if any.

    Used to say "looks like g/L" when albumin 38 arrives labelled g/dL.
    """
    low, high = RANGES[test]
    for unit in accepted_units(test):
        if low <= value * factor_to_canonical(test, unit) <= high:
            return unit
    return None
