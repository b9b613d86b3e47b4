"""The report's cheap intervals cover the truth (Monte Carlo), and the coverage check can fail.

Uses the coverage machinery of ``benchmarks/bench_report_intervals.py`` (the benchmark
measures every interval at R = 1,000 or 300; this is the fast version for the exact,
t and DeLong intervals) and the product's own interval functions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from benchmarks import bench_report_intervals as bench

from msc_response import simulate
from msc_response.config import config_from_dict
from msc_response.reporting import intervals, paper_view

R = 600
NOMINAL_MCSE = float(np.sqrt(0.95 * 0.05 / R))


@pytest.fixture(scope="module")
def child_pugh():
    """Child-Pugh labels of a SIMULATED trial-design cohort of 3,000, by the product's builder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = paper_view.endpoint_labels(
            config_from_dict({"name": "t"}), simulate("trial", 3000, seed=3)
        )
    return labels["child_pugh"]


@pytest.fixture(scope="module")
def change_pool(child_pugh):
    return child_pugh["change"].to_numpy(dtype=float)


def _within_mc_bounds(s: dict, *, conservative: bool = False, max_withheld: float = 0.0) -> None:
    """Coverage no lower than 95% - 3 MCSE (and, unless the method is conservative by
    construction, no higher than 95% + 3 MCSE), at most ``max_withheld`` without interval."""
    assert s["withheld"] <= max_withheld, s
    assert s["coverage"] >= 0.95 - 3 * NOMINAL_MCSE, s
    if not conservative:
        assert s["coverage"] <= 0.95 + 3 * NOMINAL_MCSE, s


def test_clopper_pearson_covers_at_trial_size():
    truth, n = 0.63, 33

    def fn(rng):
        pr = intervals.proportion(int((rng.random(n) < truth).sum()), n)
        return pr.estimate, pr.low, pr.high

    s = bench.summarise(*bench.replicate(fn, R, (1,)).T, truth)
    _within_mc_bounds(s, conservative=True)  # exact intervals never cover less than 95%
    assert abs(s["bias"]) <= 3 * s["bias_mcse"]


def test_t_interval_covers_the_mean_change_of_child_pugh(change_pool):
    truth, n = float(change_pool.mean()), 33

    def fn(rng):
        m = intervals.mean(change_pool[rng.integers(0, len(change_pool), n)])
        return m.mean, m.low, m.high

    s = bench.summarise(*bench.replicate(fn, R, (2,)).T, truth)
    _within_mc_bounds(s)
    assert abs(s["bias"]) <= 3 * s["bias_mcse"]


@pytest.mark.parametrize("n", [20, 33, 100])
def test_delong_covers_the_population_auroc(n):
    """The logit-scale interval; the plain AUROC +/- 1.96 SE covered in about 91% at 20."""
    truth, _ = bench.model_truth(seed=4)

    def fn(rng):
        a = intervals.auroc_delong(*bench.draw(rng, n))
        return a.estimate, a.low, a.high

    s = bench.summarise(*bench.replicate(fn, R, (3, n)).T, truth["roc_auc"])
    _within_mc_bounds(s, max_withheld=0.01)  # an AUROC of 1 (standard error 0) has no interval


def test_t_interval_at_arm_size_is_withheld_rather_than_zero_width(child_pugh):
    """Five patients of a repeated-dose arm, whose Child-Pugh mostly falls by exactly 1: an
    interval is given only when the changes differ, and then it covers (before the
    interval was withheld, zero-width intervals brought coverage down to about 0.82)."""
    arm = child_pugh.loc[child_pugh["arm"] == bench.ARM, "change"].to_numpy(dtype=float)
    truth, n = float(arm.mean()), 5

    def fn(rng):
        m = intervals.mean(arm[rng.integers(0, len(arm), n)])
        assert m.why_not is None or m.why_not == "all 5 values equal"
        return m.mean, m.low, m.high

    s = bench.summarise(*bench.replicate(fn, R, (5,)).T, truth)
    used = round(R * (1 - s["withheld"]))
    assert 0.05 < s["withheld"] < 0.4  # equal changes are common at this size
    assert s["coverage"] >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / used), s


def test_coverage_flags_an_interval_that_is_too_narrow(change_pool):
    """The same t interval at half its width: the check must fail it."""
    truth, n = float(change_pool.mean()), 33

    def narrow(rng):
        m = intervals.mean(change_pool[rng.integers(0, len(change_pool), n)])
        half = (m.high - m.low) / 4
        return m.mean, m.mean - half, m.mean + half

    s = bench.summarise(*bench.replicate(narrow, R, (2,)).T, truth)
    assert s["coverage"] < 0.95 - 3 * NOMINAL_MCSE
    with pytest.raises(AssertionError):
        _within_mc_bounds(s)


def test_coverage_counts_withheld_intervals_apart():
    low = np.array([0.0, 0.0, np.nan, 2.0])
    high = np.array([1.0, 1.0, np.nan, 3.0])
    cov, mcse, used = bench.coverage(low, high, 0.5)
    assert (cov, used) == (pytest.approx(2 / 3), 3)
    assert mcse == pytest.approx(np.sqrt(2 / 3 * 1 / 3 / 3))
    s = bench.summarise(np.array([0.4, 0.6, 0.5, 2.5]), low, high, 0.5)
    assert s["withheld"] == 0.25 and s["width"] == 1.0 and s["replicates"] == 4
