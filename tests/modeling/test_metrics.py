"""Metric names and what a person reads for them: one wording on pages, console and warnings."""

from __future__ import annotations

from msc_response.cli import _primary_lines
from msc_response.modeling import metrics
from msc_response.modeling.metrics import PERFORMANCE, VALIDATED, net_benefit_name, reported


def test_net_benefit_is_labelled_by_its_threshold_as_a_probability():
    assert metrics.label(net_benefit_name(0.3)) == "net benefit at threshold 0.30"
    assert metrics.label(net_benefit_name(0.125)) == "net benefit at threshold 0.125"  # not 0.12
    assert metrics.label(metrics.BRIER) == "Brier score"
    assert metrics.label("some_other_metric") == "some other metric"


def test_the_console_summary_uses_the_label_the_pages_use():
    names = [*PERFORMANCE, net_benefit_name(0.3)]
    model = {reported(VALIDATED, n): 0.1 for n in names} | {
        reported(VALIDATED, n, "ci"): (0.0, 0.2) for n in names
    }
    result = {"primary_model": "m", "models": {"m": model}, "net_benefit_thresholds": [0.3],
              "dropped_columns": {}, "exploratory": True, "n_patients": 33, "n_events": 12,
              "riley_min_n": 400, "riley_parameters": 5}  # fmt: skip
    assert (
        "  net benefit at threshold 0.30: 0.100 (0.000 to 0.200)"
        in _primary_lines(result).splitlines()
    )
