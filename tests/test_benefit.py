"""Benefit models and validation for benefit: reference values, behaviour on simulated truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import expit

from msc_response.config import load_config
from msc_response.errors import ConfigError
from msc_response.features import build_features
from msc_response.modeling import benefit as bm
from msc_response.modeling import benefit_validation as bv
from msc_response.simulator import rct, simulate


def rct_data(n: int, role: str, seed: int):
    """A SIMULATED randomised study as benefit data, with the true benefit aligned."""
    study = simulate("rct", n, seed, rct_design=rct.RctDesign(mx1_role=role))
    fs = build_features(load_config({"name": "b"}), study)
    data = bm.benefit_data(fs, study.patients, "arm", rct.CONTROL_ARM.name)
    truth = study.truth.set_index(study.truth["patient_id"].astype(str)).loc[data.patient_id]
    return data, truth["true_benefit"].to_numpy()


# ----------------------------------------------------------------------------------------
# reference values


def test_e_for_benefit_reproduces_htepredictionmetrics_table_1():
    """Maas et al. (HTEPredictionMetrics, 'Corrected Table 1'): 8 matched pairs, their
    predicted (L) and observed (M) pair benefit, R's loess curve (N) and the metrics."""
    L = np.array([-0.121, -0.125, -0.077, 0.015, 0.087, 0.171, 0.042, 0.146])
    M = np.array([0, 1, -1, 0, -1, 0, 0, -1.0])
    N = np.array([0.412, 0.589, -0.901, 0.081, -0.937, -0.190, -0.217, -0.707])
    np.testing.assert_allclose(bv.loess(L, M), N, atol=5e-4)  # R loess(M ~ L), defaults
    e = bv.e_for_benefit(L, M)
    assert e.eavg == pytest.approx(0.579, abs=5e-4)
    assert e.e50 == pytest.approx(0.624, abs=5e-4)
    assert e.e90 == pytest.approx(0.904, abs=5e-4)
    assert e.calibration_in_the_large == pytest.approx(-0.267, abs=5e-4)


def test_newcombe_interval_matches_the_published_example():
    """Newcombe (Stat Med 1998), 56/70 vs 48/80: method 10 gives 0.0524 to 0.3339."""
    rd = bv.risk_difference(np.r_[np.ones(56), np.zeros(14)], np.r_[np.ones(48), np.zeros(32)])
    assert rd.estimate == pytest.approx(0.2)
    assert (rd.low, rd.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_concordance_counts_pairs_of_unequal_observed_benefit_and_half_ties():
    rng = np.random.default_rng(3)
    p = rng.integers(0, 5, 60) / 4
    o = rng.integers(-1, 2, 60)
    conc = usable = 0.0
    for i in range(60):
        for j in range(60):
            if o[i] > o[j]:
                usable += 1
                conc += 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
    assert bv.concordance(p, o) == pytest.approx(conc / usable)
    assert np.isnan(bv.concordance(p, np.zeros(60)))


def test_matching_on_benefit_is_optimal_and_one_to_one():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(5, 40))
        b = rng.normal(size=n).round(int(rng.integers(0, 3)))
        t = rng.random(n) < rng.uniform(0.2, 0.8)
        if t.all() or not t.any():
            continue
        ti, ci = bv.match_on_benefit(b, t)
        assert t[ti].all() and not t[ci].any()
        assert len(set(ti)) == len(ti) == len(set(ci)) == min(t.sum(), (~t).sum())
        cost = np.abs(b[t][:, None] - b[~t][None, :])
        r, c = linear_sum_assignment(cost)
        assert np.abs(b[ti] - b[ci]).sum() == pytest.approx(cost[r, c].sum())


def test_interaction_test_finds_a_true_interaction_and_not_a_prognostic_marker():
    rng = np.random.default_rng(5)
    n = 4000
    m = rng.normal(size=n)
    t = rng.integers(0, 2, n)
    fraction = expit(-1.4 + 0.7 * m)  # the scale the test uses: logit of the fraction
    y = (rng.random(n) < expit(-0.5 + 1.0 * t + 0.8 * t * m)).astype(int)
    out = bv.interaction_test(y, t, fraction)
    assert out["verdict"] == "predictive"
    assert out["interaction_log_or"]["low"] < 0.8 < out["interaction_log_or"]["high"]
    y = (rng.random(n) < expit(-0.5 + 1.0 * t + 0.8 * m)).astype(int)
    out = bv.interaction_test(y, t, fraction)
    assert out["verdict"] == "prognostic"
    assert out["n_needed_interaction_or"] > n or out["interaction_log_or"]["p"] >= bv.ALPHA
    y = (rng.random(n) < expit(-0.5 + 1.0 * t)).astype(int)
    assert bv.interaction_test(y, t, fraction)["verdict"] in ("not shown", "prognostic")


def test_interaction_lr_statistic_is_the_g_statistic_of_a_two_by_two_table():
    # testing the arm column of [1, T]: 8/10 responders on MSC, 3/10 on standard care;
    # the likelihood ratio is G = 2 sum O log(O / E), E from the pooled rate 11/20
    t = np.repeat([1, 0], 10)
    y = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)
    g = 2 * (8 * np.log(8 / 5.5) + 2 * np.log(2 / 4.5) + 3 * np.log(3 / 5.5) + 7 * np.log(7 / 4.5))
    out = bv.interaction_lr_test(y, np.column_stack([np.ones(20), t]), draws=19, seed=1)
    assert out["lr"] == pytest.approx(g, rel=1e-8)
    assert out["p_chi2"] == pytest.approx(float(stats.chi2.sf(g, 1)), rel=1e-8)
    # a Monte Carlo p-value: (1 + draws reaching lr) / (draws + 1), reproducible by seed
    assert out["draws"] == 19 and out["p"] * 20 == pytest.approx(round(out["p"] * 20))
    assert out == bv.interaction_lr_test(y, np.column_stack([np.ones(20), t]), draws=19, seed=1)
    with pytest.raises(ValueError, match="draws"):
        bv.interaction_lr_test(y, np.column_stack([np.ones(20), t]), draws=0)


def test_interaction_lr_bootstrap_p_value_on_clear_cut_cases():
    t = np.repeat([0, 1], 40)
    m = np.tile(np.repeat([-1.0, 1.0], 20), 2)
    design = np.column_stack([np.ones(80), t, m, t * m])
    # every arm x MX1+ cell responds 10/20: the interaction's LR is 0, every draw reaches it
    y = np.tile(np.repeat([1, 0], 10), 4)
    out = bv.interaction_lr_test(y, design, draws=49)
    assert out["lr"] == pytest.approx(0.0, abs=1e-9) and out["p"] == 1.0
    # MX1+ reverses the effect (cells 3/20, 17/20 on control; 17/20, 3/20 on MSC): no draw
    # from the no-interaction fit comes near, so p is its floor 1 / (draws + 1)
    cells = [(3, 20), (17, 20), (17, 20), (3, 20)]
    y = np.concatenate([np.repeat([1, 0], [k, n - k]) for k, n in cells])
    out = bv.interaction_lr_test(y, design, draws=49)
    assert out["p"] == pytest.approx(1 / 50) and out["p_chi2"] < 1e-6
    # the verdict follows the bootstrap test
    fraction = expit(-1.4 + 0.7 * m)
    verdict = bv.interaction_test(y, t, fraction, draws=49)
    assert verdict["verdict"] == "predictive" and verdict["interaction_lr"]["p"] == out["p"]


def test_required_n_scales_with_the_inverse_square_of_the_z_statistic():
    # z = 1 at n = 100: 80% power at two-sided 5% needs (1.96 + 0.84)^2 = 7.85 times more
    assert bv.required_n(100, 0.5, 0.5) == pytest.approx(785, abs=1)
    assert bv.required_n(100, 0.0, 0.5) == float("inf")


# ----------------------------------------------------------------------------------------
# refusing what is not a randomised comparison


def test_benefit_is_refused_unless_the_data_are_randomised():
    for value in (None, False):
        with pytest.raises(ConfigError, match="randomised") as err:
            bm.require_randomised(value, "simulation.json")
        assert "single-arm" in str(err.value)
    bm.require_randomised(True, "config")


def test_inputs_are_checked_naming_the_problem():
    data, _ = rct_data(60, "both", 1)
    with pytest.raises(ConfigError, match="benefit model"):
        bm.fit_benefit_model("random_guess", data.X, data.treated, data.y)
    with pytest.raises(ConfigError, match="control arm needs at least 4"):
        bm.fit_benefit_model("risk_constant", data.X, np.ones(len(data.y), dtype=int), data.y)
    with pytest.raises(ConfigError, match="control_value"):
        study = simulate("rct", 20, 1)
        fs = build_features(load_config({"name": "b"}), study)
        bm.benefit_data(fs, study.patients, "arm", "placebo")


# ----------------------------------------------------------------------------------------
# behaviour on simulated truth


@pytest.fixture(scope="module")
def predictive_rct():
    return rct_data(1500, "predictive", 11)


@pytest.mark.parametrize("kind", bm.BENEFIT_MODELS)
def test_every_model_predicts_benefit_that_follows_the_truth(predictive_rct, kind):
    data, truth = predictive_rct
    model = bm.fit_benefit_model(kind, data.X, data.treated, data.y, seed=2)
    p0, p1 = model.predict(data.X)
    assert ((p0 >= 0) & (p0 <= 1) & (p1 >= 0) & (p1 <= 1)).all()
    benefit = model.benefit(data.X)
    assert benefit.mean() == pytest.approx(truth.mean(), abs=0.06)
    if kind != "risk_constant":  # a constant odds ratio cannot follow an MX1+ interaction
        assert np.corrcoef(benefit, truth)[0, 1] > 0.3


def test_risk_model_is_blind_to_treatment(predictive_rct):
    data, _ = predictive_rct
    flipped = bm.fit_benefit_model("risk_constant", data.X, 1 - data.treated, data.y, seed=2)
    model = bm.fit_benefit_model("risk_constant", data.X, data.treated, data.y, seed=2)
    np.testing.assert_allclose(model.risk_score(data.X), flipped.risk_score(data.X))
    assert model.benefit(data.X).mean() == pytest.approx(-flipped.benefit(data.X).mean(), abs=0.02)


@pytest.mark.slow  # 150 refits of 1,500 patients for the c-for-benefit interval
def test_validation_reports_intervals_that_hold_the_truth(predictive_rct):
    data, truth = predictive_rct
    v = bv.validate_benefit(
        data.X, data.treated, data.y, data.mx1, kind="risk_interaction", n_boot=30
    )
    s = v.summary()
    assert s["eavg_for_benefit_ci"] is None and "not applicable" in s["eavg_for_benefit_ci_note"]
    assert s["ate_ci"][0] < truth.mean() < s["ate_ci"][1]
    assert s["c_for_benefit_ci"][0] < s["c_for_benefit"] < s["c_for_benefit_ci"][1]
    assert s["c_for_benefit"] > 0.5  # benefit truly varies and the model follows it
    assert s["mx1_verdict"] == "predictive"
    assert len(v.by_predicted) == 4 and len(v.by_mx1) == 4 and len(v.by_risk) == 4
    # observed benefit rises across quarters of MX1+ under a predictive marker
    assert v.by_mx1["observed"].iloc[-1] > v.by_mx1["observed"].iloc[0]
    assert len(v.pairs.observed) == min(data.treated.sum(), (1 - data.treated).sum())


# ----------------------------------------------------------------------------------------
# the interaction test's batched bootstrap, the exported model, the expected c-for-benefit


def test_batched_logistic_fits_equal_one_at_a_time_fits_and_flag_separation():
    from msc_response.modeling.calibration import logistic_glm

    rng = np.random.default_rng(3)
    n = 120
    design = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])
    Y = (rng.random((n, 5)) < expit(design @ np.array([-0.3, 0.8, 0.5]))[:, None]).astype(float)
    Y[:, 4] = design[:, 2] > 0  # separated by the third column: no maximum
    coef, failed = bv.logistic_fits(design, Y)
    assert failed.tolist() == [False] * 4 + [True]
    for j in range(4):
        np.testing.assert_allclose(coef[:, j], logistic_glm(design, Y[:, j]).coef, atol=1e-8)
    assert logistic_glm(design, Y[:, 4]).problem  # the one-at-a-time fit agrees


def test_exported_benefit_model_predicts_as_the_fitted_one(predictive_rct):
    data, _ = predictive_rct
    X = data.X.copy()
    X.iloc[:5, 0] = np.nan  # missing values: the training medians, as in the pipeline
    for kind in bm.EXPORTABLE:
        doc = bm.export_benefit_model(X, data.treated, data.y, kind=kind, seed=2, n_boot=20)
        table = bm.apply_exported({**doc, "provenance": {}}, X)
        model = bm.fit_benefit_model(kind, X, data.treated, data.y, seed=2)
        np.testing.assert_allclose(table["predicted_benefit"], model.benefit(X), atol=1e-9)
        reference = bm.predict_benefit(
            X, data.treated, data.y, X.iloc[:40], kind=kind, seed=2, n_boot=20
        )
        np.testing.assert_allclose(table.iloc[:40].to_numpy(), reference.to_numpy(), atol=1e-9)
    with pytest.raises(ConfigError, match="no pickle"):
        bm.export_benefit_model(X, data.treated, data.y, kind="t_learner")
    with pytest.raises(ConfigError, match="lack baseline features"):
        bm.apply_exported(doc, X.drop(columns=X.columns[0]))


def test_expected_c_for_benefit_is_the_mean_of_simulated_c_for_benefit():
    rng = np.random.default_rng(5)
    n = 400
    treated = rng.permutation(np.repeat([0, 1], n // 2))
    p0 = rng.uniform(0.2, 0.5, n)
    p1 = np.clip(p0 + rng.uniform(0, 0.4, n), 0, 1)
    benefit = (p1 - p0) + rng.normal(0, 0.05, n)  # a model that ranks the benefit well
    expected = bv.expected_c_for_benefit(benefit, treated, p1, p0)
    draws = []
    for _ in range(300):
        y = np.where(treated == 1, rng.random(n) < p1, rng.random(n) < p0).astype(int)
        pairs = bv.matched_pairs(benefit, treated, y)
        draws.append(bv.concordance(pairs.predicted, pairs.observed))
    assert expected == pytest.approx(np.mean(draws), abs=3 * np.std(draws) / np.sqrt(300) + 0.002)
    assert expected > 0.52  # the ranking is informative
    assert bv.expected_c_for_benefit(-benefit, treated, p1, p0) < 0.48
