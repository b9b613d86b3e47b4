"""Plausible values: one table, one wording, used by the study reader, the visit table and the config."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from msc_response import plausible, units
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.features.build import SCORE_TESTS
from msc_response.modeling.splines import LOG_LABS
from msc_response.study.visits import VISIT_NUMERIC, canonical_visits

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_suggest_unit_spots_the_wrong_label():
    assert plausible.suggest_unit("albumin", 38.0) == "g/L"
    assert plausible.suggest_unit("albumin", 3.8) == "g/dL"
    assert plausible.suggest_unit("albumin", 900.0) is None


def test_whole_number_tests_take_whole_numbers_in_range_only():
    assert plausible.is_plausible("ascites", 2) and not plausible.is_plausible("ascites", 1.5)
    assert not plausible.is_plausible("ascites", 3)
    assert plausible.is_plausible("albumin", 0.5) and not plausible.is_plausible("albumin", 7.01)


def _visit_problems(column: str, value: str) -> list[str]:
    with pytest.raises(DataError) as err:
        canonical_visits(pd.DataFrame({column: [value]}), "visits.csv")
    return [p.message for p in err.value.problems]


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [("albumin", 38, "within 0.5-7 g/dL"), ("ascites", 1.5, "a whole grade 0-2"),
     ("encephalopathy", 7, "a whole grade 0-4")],
)  # fmt: skip
def test_the_config_and_the_visit_table_say_what_the_study_reader_says(test, value, expected):
    # the study reader's wording, e.g. "albumin value 38.0 g/dL is not plausible (expected within
    # 0.5-7 g/dL)", is asserted in tests/test_intake.py; the other two readers use the same phrase
    with pytest.raises(
        ConfigError, match=re.escape(f"assume.{test}: bad value {value!r}; expected {expected}")
    ):
        config_from_dict({"name": "x", "assume": {test: value}})
    message = _visit_problems(test, str(value))[0]
    assert message.startswith(f"value {float(value)!r} is not plausible (expected {expected})")


def test_the_visit_table_names_the_likely_unit():
    assert _visit_problems("albumin", "38") == [
        "value 38.0 is not plausible (expected within 0.5-7 g/dL); "
        "a value of this size looks like g/L, not g/dL"
    ]


def test_the_data_contract_states_the_table():
    text = (DOCS / "data-contract.md").read_text(encoding="utf-8")
    for test, (low, high) in plausible.RANGES.items():
        row = next(line for line in text.splitlines() if re.match(rf"\|[^|]*`{test}`", line))
        shown = "0 or 1" if (low, high) == (0, 1) else f"{low:g}-{high:g}"
        assert shown in row, (test, row)


def test_the_spline_log_floors_are_the_plausible_lower_ends():
    # modeling/splines.py writes the floors as numbers (its docs say "the lower end of the
    # plausible range"); this keeps the two the same fact
    assert {t: plausible.RANGES[t][0] for t in LOG_LABS} == LOG_LABS


def test_the_known_tests_are_one_list():
    # the visit table keeps its own column order (its messages list them), not its own tests
    assert set(VISIT_NUMERIC) == set(SCORE_TESTS) == units.KNOWN_TESTS == set(plausible.RANGES)
    assert SCORE_TESTS == ("bilirubin", "albumin", "inr", "pt", "pt_control", "creatinine",
                           "sodium", "ascites", "encephalopathy", "dialysis")  # fmt: skip
