import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from msc_response.modeling import validation


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 1)  # many ties
    assert validation.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    rows = validation.roc_auc_rows(np.vstack([y, y]), np.vstack([p, 1 - p]))
    assert rows[0] == pytest.approx(roc_auc_score(y, p)) and rows[1] == pytest.approx(
        1 - roc_auc_score(y, p)
    )


def test_calibration_of_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1.5, 20000)
    y = rng.random(20000) < expit(lp)
    intercept, slope = validation.calibration(y, expit(lp))
    assert intercept == pytest.approx(0, abs=0.05) and slope == pytest.approx(1, abs=0.05)
    _, slope_over = validation.calibration(y, expit(2 * lp))  # overfit: too extreme
    assert slope_over == pytest.approx(0.5, abs=0.05)


def test_riley_worked_example():
    r = validation.riley_min_n(0.174, 24, 0.288)
    assert r["min_n"] == 662
    assert r["criterion_intercept"] == 221
    with pytest.raises(ValueError, match="prevalence"):
        validation.riley_min_n(0.0, 10)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    y = (rng.random(n) < expit(1.5 * X["a"])).astype(int).to_numpy()
    return X, y


def make(seed):
    return LogisticRegression(C=1.0)


def test_cross_validation_is_deterministic_and_independent_of_n_jobs():
    X, y = _data()
    a = validation.cross_validate(make, X, y, folds=5, repeats=3, seed=7, n_boot_ci=200, n_jobs=1)
    b = validation.cross_validate(make, X, y, folds=5, repeats=3, seed=7, n_boot_ci=200, n_jobs=2)
    np.testing.assert_array_equal(a.oof, b.oof)
    assert a.roc_auc_ci == b.roc_auc_ci
    assert not np.isnan(a.oof).any()
    lo, hi = a.roc_auc_ci
    assert lo < a.metrics["roc_auc"] < hi


def test_optimism_is_positive_for_a_flexible_model_on_noise():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(60, 30)))
    y = rng.integers(0, 2, 60)
    opt = validation.bootstrap_optimism(
        lambda s: LogisticRegression(C=100.0, max_iter=2000), X, y, n_boot=30, seed=1
    )
    assert opt.apparent["roc_auc"] > 0.75  # memorises noise
    assert opt.optimism["roc_auc"] > 0.1
    assert opt.corrected["roc_auc"] < opt.apparent["roc_auc"] - 0.1
