"""``logistic_rcs``: Harrell's restricted cubic splines, the log of skewed labs, the fitted model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from patsy import dmatrix
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import SplineTransformer, StandardScaler

from conftest import statistical_warnings
from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling.fit import fit
from msc_response.modeling.fitted import FittedModel
from msc_response.modeling.models import (
    FLEXIBLE_MIN_MINORITY,
    ModelSpec,
    endpoint_baseline_feature,
    make_estimator,
    unpenalised_columns,
)
from msc_response.modeling.splines import SplineExpansion, knots, n_knots, rcs_basis
from msc_response.simulator import write_simulation as simulate


@pytest.fixture(scope="module")
def larger_trial(tmp_path_factory):
    """A SIMULATED trial of 80 patients (58 responders: 22 in the smaller class, enough for
    ``logistic_rcs``'s own form; the default 33-patient trial has 9)."""
    out = tmp_path_factory.mktemp("sim") / "trial80"
    simulate(out, design="trial", seed=1, n_patients=80, h5ad_patients=0)
    return out


def test_the_basis_by_hand():
    # knots 0, 1, 3: one nonlinear column, (x)+^3 - (x-1)+^3 * 3/2 + (x-3)+^3 * 1/2, over 3^2
    t = np.array([0.0, 1.0, 3.0])
    x = np.array([-1.0, 0.5, 2.0, 4.0])
    expected = np.array([0.0, 0.125, 8 - 1.5, 64 - 27 * 1.5 + 0.5]) / 9
    np.testing.assert_allclose(rcs_basis(x, t)[:, 0], expected, rtol=1e-12)
    # linear beyond the outer knots: the second difference vanishes there
    far = rcs_basis(np.array([5.0, 6.0, 7.0]), t)[:, 0]
    assert far[2] - 2 * far[1] + far[0] == pytest.approx(0, abs=1e-12)


def test_the_basis_spans_patsys_natural_cubic_splines():
    z = np.log(np.random.default_rng(0).lognormal(0, 1, 200))
    t = knots(z, 5)
    ours = np.column_stack([np.ones_like(z), z, rcs_basis(z, t)])
    cr = np.asarray(dmatrix("cr(z, knots=inner, lower_bound=lo, upper_bound=hi) - 1",
                            {"z": z, "inner": t[1:-1], "lo": t[0], "hi": t[-1]}))  # fmt: skip
    for a, b in ((ours, cr), (cr, ours)):  # each spans the other
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        np.testing.assert_allclose(a @ coef, b, atol=1e-9)


def test_patsys_basis_would_change_the_penalised_model():
    """Why ``splines.rcs_basis`` is kept rather than patsy's ``cr()`` or scikit-learn's
    ``SplineTransformer`` (measured, not assumed).

    ``cr()`` spans the same curves (test above), so an unpenalised fit is the same; but
    ``logistic_rcs`` is penalised (standardised columns, L2), and a penalty depends on the
    parameterisation: with Harrell's, the linear term stands apart and shrinking the
    spline terms leads towards a straight line, as in ``rms``. Measured over 200 simulated
    cohorts of 60 (one curved predictor, 4 knots; C = 1, scikit-learn's default): the largest
    difference in a fitted probability between the two bases was 0.015 at least, 0.10 in
    the median, 0.41 at most; unpenalised (C = 1e8) under 5e-4. ``SplineTransformer`` has no
    natural (linear-tail) constraint: its cubic B-splines span 2 more columns (rank 6 vs 4
    with 4 knots), another model.
    """
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 60)
    y = (rng.random(60) < expit(1.2 * z - 0.3 * z**2)).astype(int)
    t = knots(z, 4)
    harrell = np.column_stack([z, rcs_basis(z, t)])
    natural = np.asarray(dmatrix("cr(z, knots=inner, lower_bound=lo, upper_bound=hi) - 1",
                                 {"z": z, "inner": t[1:-1], "lo": t[0], "hi": t[-1]}))  # fmt: skip

    def fitted(basis, C):
        scaled = StandardScaler().fit_transform(basis)
        model = LogisticRegression(C=C, solver="newton-cholesky", max_iter=1000).fit(scaled, y)
        return model.predict_proba(scaled)[:, 1]

    assert np.abs(fitted(harrell, 1e8) - fitted(natural, 1e8)).max() < 1e-6
    assert np.abs(fitted(harrell, 1.0) - fitted(natural, 1.0)).max() > 0.01
    b_splines = SplineTransformer(knots=t[:, None], extrapolation="linear").fit_transform(
        z[:, None]
    )
    assert np.linalg.matrix_rank(np.column_stack([np.ones_like(z), harrell])) == 4
    assert np.linalg.matrix_rank(b_splines) == 6


def rcspline_eval(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """``rms::rcspline.eval(x, knots, inclx=FALSE, norm=2)``, transcribed line by line from R.

    An independent reference: R divides by ``kd = (t_k - t_1)^(2/3)`` inside the cube, the
    project divides the cubes by ``(t_k - t_1)^2`` after.
    """
    nk = len(knots)
    knot1, knot_nk, knot_nk1 = knots[0], knots[nk - 1], knots[nk - 2]
    kd = (knot_nk - knot1) ** (2 / 3)
    xx = np.empty((len(x), nk - 2))
    for j in range(nk - 2):
        xx[:, j] = np.maximum((x - knots[j]) / kd, 0) ** 3 + (
            (knot_nk1 - knots[j]) * np.maximum((x - knot_nk) / kd, 0) ** 3
            - (knot_nk - knots[j]) * np.maximum((x - knot_nk1) / kd, 0) ** 3
        ) / (knot_nk - knot_nk1)
    return xx


@pytest.mark.parametrize("k", [3, 4, 5])
def test_the_basis_equals_rms_rcspline_eval(k):
    z = np.random.default_rng(k).lognormal(0, 1, 150)
    t = knots(z, k)
    assert len(t) == k
    x = np.r_[z, t, t[0] - 1.0, t[-1] + 5.0]  # at and beyond the knots too
    np.testing.assert_allclose(rcs_basis(x, t), rcspline_eval(x, t), rtol=0, atol=1e-9)


def test_knots_follow_harrells_rule():
    assert [n_knots(n) for n in (29, 30, 99, 100)] == [3, 4, 4, 5]
    x = np.arange(1.0, 51.0)  # below 100 values: outer knots at the 5th smallest and largest
    np.testing.assert_allclose(knots(x, 4), [5.0, np.quantile(x, 0.35), np.quantile(x, 0.65), 46.0])
    # ties merge knots: a grade 0-2 gets 3 (linear + 1 term: as saturated as a factor)
    assert len(knots(np.array([0.0, 1.0, 2.0] * 20), 4)) == 3


def test_skewed_labs_are_logged_and_flags_stay_linear():
    rng = np.random.default_rng(1)
    n = 60
    X = np.column_stack([rng.lognormal(0.5, 1, n), rng.normal(3.2, 0.5, n), rng.integers(0, 2, n),
                         np.r_[0.0, rng.lognormal(0, 1, n - 1)]])  # fmt: skip
    names = ("baseline_bilirubin", "baseline_albumin", "female", "baseline_creatinine")
    exp = SplineExpansion(names).fit(X)
    out = exp.transform(X)
    np.testing.assert_allclose(out[:, 0], np.log(X[:, 0]), rtol=1e-12)  # bilirubin: log
    assert out[0, exp.source_ == 3][0] == pytest.approx(np.log(0.1))  # creatinine 0: floored
    assert [len(t) for t in exp.knots_] == [4, 4, 0, 4]  # 60 patients: 4 knots; a flag linear
    # the linear terms first, in feature order, then the nonlinear terms feature by feature
    assert list(exp.source_) == [0, 1, 2, 3, 0, 0, 1, 1, 3, 3]
    np.testing.assert_allclose(out[:, :4], np.column_stack([np.log(X[:, 0]), X[:, 1], X[:, 2],
                                                            np.log(np.maximum(X[:, 3], 0.1))]))  # fmt: skip
    np.testing.assert_allclose(exp.per_feature(np.ones((2, out.shape[1]))), [[3, 3, 1, 3]] * 2)


def test_the_expansion_is_the_logged_columns_and_each_basis_stacked_to_the_bit():
    # the transform writes its columns into one array as it makes them (speed, issue 25): the
    # numbers must stay those of stacking them, bit for bit, missing values included
    rng = np.random.default_rng(4)
    n = 500
    X = np.column_stack([rng.lognormal(0.5, 1, n), rng.normal(3.2, 0.5, n), rng.integers(0, 2, n),
                         rng.normal(0, 1, n)])  # fmt: skip
    X[rng.random(n) < 0.05, 1] = np.nan
    exp = SplineExpansion(("baseline_bilirubin", "baseline_albumin", "female", "age_years")).fit(X)
    Z = np.column_stack([np.log(np.maximum(X[:, 0], 0.05)), X[:, 1:]])
    stacked = np.hstack([Z] + [rcs_basis(Z[:, j], t) for j, t in enumerate(exp.knots_)])
    assert np.array_equal(exp.transform(X), stacked, equal_nan=True)


def test_logistic_rcs_is_fitted_validated_stored_and_explained(larger_trial, tmp_path):
    config = config_from_dict({"name": "rcs", "model": {
        "candidates": ["logistic_rcs"], "repeats": 2, "bootstrap": 20, "n_jobs": 1}})  # fmt: skip
    features = build_features(config, larger_trial)
    with statistical_warnings("below Riley's minimum sample size"):
        result = fit(config, features, simulated=True)
    s = result.summary()
    assert s["primary_model"] == "logistic_rcs" and result.fitted.kind == "logistic"
    assert "expand" in result.fitted.estimator.named_steps  # the splines, not the fallback
    assert not any("fitted as logistic_l2" in w for w in result.warnings)
    lo, hi = s["validated_roc_auc_ci"]
    assert 0 <= lo < s["validated_roc_auc"] < hi <= 1
    assert isinstance(s["models"]["logistic_rcs"]["optimism_corrected_roc_auc"], float)
    X = result.X[result.fitted.feature_columns]
    p = result.fitted.predict_proba(X)
    contrib, base = result.fitted.contributions(X)
    assert contrib.shape == X.shape  # one contribution per feature, spline terms added up
    np.testing.assert_allclose(base + contrib.sum(axis=1), logit(p), atol=1e-9)
    path = result.fitted.save(tmp_path)  # skops, our spline step trusted by name
    spec = {"kind": "logistic", "feature_columns": result.fitted.feature_columns}
    again = FittedModel.load(spec, path)
    np.testing.assert_allclose(again.predict_proba(pd.DataFrame(X)), p, rtol=1e-12)


def test_logistic_rcs_leaves_the_endpoints_baseline_value_unpenalised(larger_trial):
    # the penalised fit's optimality conditions: the score equation of an unpenalised column
    # is zero; a penalised column's is its coefficient over C (the penalty's pull)
    config = config_from_dict(
        {"name": "rcs", "model": {"candidates": ["logistic_rcs", "logistic_l2"]}}
    )
    features = build_features(config, larger_trial)
    X, y = features.table[list(features.feature_columns)], features.table["response"].to_numpy()
    assert min(y.sum(), len(y) - y.sum()) >= FLEXIBLE_MIN_MINORITY
    anchor = endpoint_baseline_feature(config)
    for name, free in (("logistic_rcs", [list(X.columns).index(anchor)]), ("logistic_l2", [])):
        spec = ModelSpec(name, "logistic", "candidate", tuple(X.columns))
        assert list(unpenalised_columns(spec, config)) == free
        pipe = make_estimator(spec, config, seed=0, n_minority=int(min(y.sum(), len(y) - y.sum())))
        pipe.fit(X.to_numpy(dtype=float), y)
        lr = pipe[-1].model_
        Z = pipe[:-1].transform(X.to_numpy(dtype=float))
        score = Z.T @ (y - lr.predict_proba(Z)[:, 1])  # d log-likelihood / d coefficient
        penalised = np.setdiff1d(np.arange(Z.shape[1]), free)
        np.testing.assert_allclose(
            pipe[-1].C_ * score[penalised], lr.coef_[0, penalised], atol=1e-3
        )
        np.testing.assert_allclose(score[free], 0, atol=1e-3)
        if free:  # the anchor has a real coefficient, whose score a penalty would pull off zero
            assert abs(lr.coef_[0, free[0]]) / pipe[-1].C_ > 0.1


def test_logistic_rcs_below_fifteen_in_the_smaller_class_is_logistic_l2(trial_dir):
    # Harrell's m/15: the default trial (9 in the smaller class) cannot carry one parameter
    # beyond a penalised linear model, so logistic_rcs is logistic_l2 there, fit for fit
    config = config_from_dict(
        {
            "name": "rcs",
            "model": {
                "candidates": ["logistic_rcs", "logistic_l2"],
                "repeats": 2,
                "bootstrap": 10,
                "n_jobs": 1,
            },
        }  # fmt: skip
    )
    features = build_features(config, trial_dir)
    X = features.table[list(features.feature_columns)].to_numpy(dtype=float)
    y = features.table["response"].to_numpy(dtype=int)
    m = int(min(y.sum(), len(y) - y.sum()))
    assert m < FLEXIBLE_MIN_MINORITY

    def predictions(name, n_minority):
        spec = ModelSpec(name, "logistic", "candidate", tuple(features.feature_columns))
        pipe = make_estimator(spec, config, seed=3, n_minority=n_minority)
        return pipe, pipe.fit(X, y).predict_proba(X)[:, 1]

    rcs, p_rcs = predictions("logistic_rcs", FLEXIBLE_MIN_MINORITY - 1)
    _, p_l2 = predictions("logistic_l2", FLEXIBLE_MIN_MINORITY - 1)
    assert "expand" not in rcs.named_steps and rcs[-1].unpenalised == ()
    np.testing.assert_array_equal(p_rcs, p_l2)
    flexible, p_flexible = predictions("logistic_rcs", FLEXIBLE_MIN_MINORITY)
    assert "expand" in flexible.named_steps and len(flexible[-1].unpenalised) == 1
    assert np.abs(p_flexible - p_l2).max() > 0.01
    with statistical_warnings(
        f"logistic_rcs is fitted as logistic_l2 .* has {m} patients, below the 15"
    ):
        result = fit(config, features, simulated=True)
    rcs_fit, l2_fit = result.models["logistic_rcs"], result.models["logistic_l2"]
    np.testing.assert_array_equal(rcs_fit.oof, l2_fit.oof)  # same splits, same model
    assert rcs_fit.bootstrap.roc_auc_632plus == l2_fit.bootstrap.roc_auc_632plus
