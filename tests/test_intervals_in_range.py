"""Intervals inside their quantity's range, the operating point, Riley's sample size for validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from msc_response.modeling import metrics
from msc_response.modeling.validation import riley_validation_n
from msc_response.reporting import intervals
from msc_response.reporting.operating_point import operating_point
from page_tables import bounds_checked, out_of_range


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.0, np.inf), (-np.inf, 1.0), (-1.0, 1.0)])
def test_wald_within_never_leaves_the_range_and_contains_the_estimate(bounds):
    rng = np.random.default_rng(1)
    lo_b, hi_b = bounds
    for _ in range(2000):
        low_edge = lo_b if np.isfinite(lo_b) else -5.0
        high_edge = hi_b if np.isfinite(hi_b) else 5.0
        est = rng.uniform(low_edge, high_edge)
        se = rng.exponential(0.5)
        lo, hi = metrics.wald_within(est, se, bounds)
        assert lo_b <= lo <= est <= hi <= hi_b, (est, se, lo, hi)


def test_wald_within_is_the_plain_interval_without_bounds_and_none_on_a_bound():
    assert metrics.wald_within(0.2, 0.1) == pytest.approx((0.004, 0.396))
    assert np.isnan(metrics.wald_within(1.0, 0.1, (0, 1))).all()  # an AUROC of 1: no interval
    assert np.isnan(metrics.wald_within(0.0, 0.1, (0, 1))).all()
    assert np.isnan(metrics.wald_within(0.5, np.nan, (0, 1))).all()


def test_the_old_clipped_interval_would_have_left_the_range_where_the_new_one_does_not():
    # the AUROC 0.737 with SD 0.161: +/- 1.96 SD reaches 1.053, clipped to 1.000
    lo, hi = metrics.wald_within(0.737, 0.161, metrics.RANGES[metrics.ROC_AUC])
    assert 0 < lo < 0.737 < hi < 1
    assert 0.737 + 1.96 * 0.161 > 1


def test_mean_of_fractions_stays_inside_zero_one():
    # an arm's MX1+ monocyte fractions near 0: the t interval went below 0 (-0.039 in the issue)
    values = [0.01, 0.0, 0.002, 0.09, 0.005]
    plain = intervals.mean(values)
    inside = intervals.mean(values, within=intervals.UNIT_RANGE)
    assert plain.low < 0
    assert 0 < inside.low < inside.mean < inside.high < 1
    prob = intervals.mean([0.95, 0.99, 0.2, 0.97], within=intervals.UNIT_RANGE)
    assert 0 < prob.low < prob.mean < prob.high < 1
    assert (
        intervals.mean([0.0, 0.0, 0.0], within=intervals.UNIT_RANGE).why_not == "all 3 values equal"
    )


def test_operating_point_counts_and_exact_intervals():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.5, 0.2, 0.6, 0.1, 0.49, 0.3, 0.7])
    op = operating_point(y, p, 0.5)
    assert (op.tp, op.fp, op.fn, op.tn) == (3, 1, 1, 3)  # 0.5 itself is called a responder
    table = op.table().set_index("predicted")
    assert table.loc["total", "total"] == 8 and table.loc["responder", "observed responder"] == 3
    sens = op.measures()["sensitivity"]
    ci = stats.binomtest(3, 4).proportion_ci(method="exact")
    assert (sens.x, sens.n, sens.low, sens.high) == (
        3,
        4,
        pytest.approx(ci.low),
        pytest.approx(ci.high),
    )
    numbers = op.numbers("external_")
    assert numbers["external_tp"] == 3 and numbers["external_npv"] == 0.75
    assert list(metrics.predicted_responder(p, 0.5)) == [1, 1, 0, 1, 0, 0, 0, 1]


def test_a_measure_with_no_patients_is_not_a_number():
    op = operating_point([1, 1, 0], [0.1, 0.2, 0.3], 0.5)  # nobody called a responder
    assert op.measures()["ppv"].text() == "0/0 (no patients)"
    assert "external_ppv" not in op.numbers("external_")


def test_predicted_responder_refuses_a_threshold_that_is_not_a_probability():
    with pytest.raises(ValueError, match="threshold.*1.5"):
        metrics.predicted_responder([0.2], 1.5)


def test_riley_validation_n_reproduces_the_worked_example_of_pmvalsampsize():
    """pmvalsampsize's test 4.1 (Riley et al. 2021's heart-valve example): prevalence 0.018,
    C 0.8, LP ~ N(-5, 2.5), O/E interval width 1 -> O/E 905, slope 4501 (from 1,000
    simulated LP values), C 4252."""
    r = riley_validation_n(0.018, 0.8, lp_normal=(-5, 2.5), targets={"oe_ci_width": 1})
    assert r.criteria["oe"] == 905
    assert r.criteria["c_statistic"] == 4252
    assert r.criteria["calibration_slope"] == pytest.approx(
        4501, rel=0.03
    )  # simulation noise in R's 4501
    assert r.min_n == r.criteria["calibration_slope"]
    # the same with observed linear predictors instead of the normal: the same answer
    lp = np.random.default_rng(0).normal(-5, 2.5, 200_000)
    assert riley_validation_n(0.018, 0.8, lp=lp, targets={"oe_ci_width": 1}).criteria[
        "calibration_slope"
    ] == pytest.approx(r.criteria["calibration_slope"], rel=0.02)


def test_riley_validation_net_benefit_by_hand():
    # standardised NB: SE 0.051 for width 0.2; w = (1-phi)/phi x t/(1-t)
    phi, t, sens, spec = 0.3, 0.2, 0.8, 0.7
    w = (1 - phi) / phi * t / (1 - t)
    expected = np.ceil((sens * (1 - sens) / phi + w**2 * spec * (1 - spec) / (1 - phi)
                        + w**2 * (1 - spec) ** 2 / (phi * (1 - phi))) / 0.051**2)  # fmt: skip
    r = riley_validation_n(
        phi, 0.75, lp_normal=(-1, 1), threshold=t, sensitivity=sens, specificity=spec
    )
    assert r.criteria["net_benefit"] == expected
    with pytest.raises(ValueError, match="c_statistic"):
        riley_validation_n(phi, 0.4, lp_normal=(-1, 1))


def test_the_page_check_sees_a_bound_out_of_range(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        "<table><caption>m</caption><thead><tr><th>metric</th><th>estimate</th><th>95% CI low</th>"
        "<th>95% CI high</th></tr></thead><tbody><tr><td>AUROC</td><td>0.737</td><td>0.422</td>"
        "<td>1.053</td></tr><tr><td>net benefit at threshold 0.30</td><td>0.1</td><td>-0.2</td>"
        "<td>0.3</td></tr></tbody></table>"
        "<table><thead><tr><th>model</th><th>AUROC (.632+, 95% CI)</th></tr></thead><tbody><tr><td>a</td>"
        "<td>0.737 (-0.100 to 0.900)</td></tr></tbody></table>"
    )
    bad = out_of_range(page)
    assert len(bad) == 2 and "1.053" in bad[0] and "-0.100" in bad[1]
    assert (
        bounds_checked(page) == 3
    )  # the AUROC's two bounds and the text interval; net benefit has no range
