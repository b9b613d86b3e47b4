"""Contributions looked up per tree equal LightGBM's own TreeSHAP (``pred_contrib``).

Real LightGBM models throughout: the product's model on a SIMULATED study, models built to
carry every missing-value rule LightGBM has (None, Zero, NaN; default left and right) and
deeper trees, inputs at, just beside and far from every threshold, and the models the
tables do not cover (they fall back to ``pred_contrib`` itself).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling import tree_tables
from msc_response.modeling.explain import top_contributions
from msc_response.modeling.fitted import FittedModel
from msc_response.modeling.models import ModelSpec, make_estimator
from msc_response.modeling.predict import predict_features
from msc_response.modeling.tree_tables import ZERO, ContributionTables, NotCovered, tables_for
from msc_response.simulator import write_simulation

TOLERANCE = 1e-12  # log-odds, absolute; the sums differ from LightGBM's only in their order


def _lgbm(X, y, categorical=(), **params):
    import lightgbm as lgb

    defaults = {"n_estimators": 40, "random_state": 3, "n_jobs": 1, "verbose": -1,
                "deterministic": True, "force_row_wise": True, "min_child_samples": 4}  # fmt: skip
    model = lgb.LGBMClassifier(**{**defaults, **params})
    return model.fit(X, y, categorical_feature=list(categorical) or "auto").booster_


def _reference(booster, X) -> np.ndarray:
    return booster.predict(np.asarray(X, dtype=float), pred_contrib=True, num_threads=1)


def _assert_equal_to_lightgbm(booster, X):
    tables = ContributionTables.build(booster)
    got, want = tables.contributions(np.asarray(X, dtype=float)), _reference(booster, X)
    assert got.shape == want.shape and not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    assert (got[:, -1] == want[:, -1]).all()  # the expected value is LightGBM's own number
    # probabilities: LightGBM's own sum in its own order, so equal bit for bit
    probability = booster.predict(np.asarray(X, dtype=float), num_threads=1)
    assert np.array_equal(tables.probabilities(np.asarray(X, dtype=float)), probability)
    return tables


def _thresholds(booster) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for tree in ContributionTables.build(booster).trees:
        for node in tree.nodes:
            out.setdefault(node.feature, []).append(node.threshold)
    return out


def _adversarial(booster, base: np.ndarray, seed: int) -> np.ndarray:
    """Rows of ``base`` with one feature set to every value where a decision can turn:
    each threshold of the model and its neighbours, zero (both signs), LightGBM's zero
    band and its edges, NaN and the infinities; then rows mixing such values at random
    in every feature (combinations inside one tree), all-NaN and all-zero rows."""
    rng = np.random.default_rng(seed)
    special = [0.0, -0.0, np.nan, np.inf, -np.inf, ZERO, -ZERO, 1e-36, -1e-36,
               np.nextafter(ZERO, 1.0), np.nextafter(-ZERO, -1.0), 1.0, -1.0]  # fmt: skip
    per_feature = {}
    for f in range(base.shape[1]):
        values = list(special)
        for t in _thresholds(booster).get(f, []):
            values += [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), -t]
        per_feature[f] = np.array(values)
    rows = []
    for f, values in per_feature.items():
        block = base[rng.integers(len(base), size=len(values))].copy()
        block[:, f] = values
        rows.append(block)
    mixed = np.column_stack([rng.choice(per_feature[f], size=4000) for f in range(base.shape[1])])
    rows += [mixed, np.full((1, base.shape[1]), np.nan), np.zeros((1, base.shape[1])),
             np.full((1, base.shape[1]), -0.0)]  # fmt: skip
    return np.vstack(rows)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """The product's LightGBM (its defaults: 150 trees of depth 2) fitted on a SIMULATED
    screening study, and the features of a fresh SIMULATED cohort of 20,000."""
    root = tmp_path_factory.mktemp("tables")
    config = config_from_dict({"name": "tables", "model": {"candidates": ["lightgbm"]}})
    write_simulation(root / "train", design="screening", n_patients=2000, seed=21, h5ad_patients=0)
    write_simulation(root / "fresh", design="screening", n_patients=20_000, seed=22,
                     fmt="parquet", baseline_only=True, h5ad_patients=0)  # fmt: skip
    train = build_features(config, root / "train")
    columns = train.feature_columns
    spec = ModelSpec("lightgbm", "lightgbm", "candidate", tuple(columns))
    y = train.table["response"].to_numpy()
    estimator = make_estimator(spec, config, seed=5, n_minority=int(min(y.sum(), len(y) - y.sum())))
    estimator.fit(train.table[columns].astype(float).to_numpy(), y)
    fresh = build_features(config, root / "fresh", labels=False)
    return FittedModel.from_estimator("lightgbm", columns, estimator), fresh.table[columns].astype(
        float
    )


def test_the_products_model_on_a_simulated_cohort(product):
    fitted, X = product
    booster = fitted.estimator
    assert booster.num_trees() == 150
    tables = _assert_equal_to_lightgbm(booster, X.to_numpy())
    assert max(len(tree.nodes) for tree in tables.trees) == 3  # depth 2: at most 8 patterns
    gaps = X.to_numpy().copy()  # a lab a patient lacks is NaN: one cell in ten
    gaps[np.random.default_rng(4).random(gaps.shape) < 0.1] = np.nan
    _assert_equal_to_lightgbm(booster, gaps)


def test_the_products_model_at_every_threshold_and_special_value(product):
    fitted, X = product
    _assert_equal_to_lightgbm(fitted.estimator, _adversarial(fitted.estimator, X.to_numpy(), 1))


def _missing_type_data(seed: int, n: int = 3000):
    """Feature 0 with NaN (missing_type NaN), feature 1 with many zeros (Zero under
    ``zero_as_missing``), feature 2 complete (None), feature 3 with NaN carrying the signal
    (default left) and feature 4 with NaN carrying the opposite (default right)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[rng.random(n) < 0.2, 0] = np.nan
    X[rng.random(n) < 0.3, 1] = 0.0
    miss3, miss4 = rng.random(n) < 0.25, rng.random(n) < 0.25
    logit = np.nan_to_num(X[:, 0]) + X[:, 1] + 0.8 * X[:, 2] + 1.5 * miss3 - 1.5 * miss4
    X[miss3, 3], X[miss4, 4] = np.nan, np.nan
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    return X, y


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 4, "max_depth": 2},
        {"num_leaves": 8, "max_depth": 3},
        {"num_leaves": 12, "max_depth": 4},
        {"num_leaves": 8, "max_depth": 3, "zero_as_missing": True},
        {"num_leaves": 16, "max_depth": 4, "zero_as_missing": True},
    ],
)
def test_every_missing_value_rule_and_deeper_trees(params):
    X, y = _missing_type_data(7)
    booster = _lgbm(X, y, **params)
    trees = ContributionTables.build(booster).trees
    seen = {(n.missing, n.default_left) for t in trees for n in t.nodes}
    assert any(t.rows is not None for t in trees) == (params["max_depth"] > 2)  # 2^7 > 64 patterns
    expected = {"Zero"} if params.get("zero_as_missing") else {"None", "NaN"}
    assert expected <= {missing for missing, _ in seen}  # the rules this model was built to carry
    assert {True, False} <= {left for _, left in seen}
    fresh, _ = _missing_type_data(8, n=5000)
    _assert_equal_to_lightgbm(booster, fresh)
    _assert_equal_to_lightgbm(booster, _adversarial(booster, fresh, 2))


def test_a_booster_with_a_best_iteration_is_tabulated_as_lightgbm_predicts_with_it():
    """Early stopping leaves trees past the best iteration, which ``predict`` (and so
    ``pred_contrib``) leaves out by default: the tables leave them out too."""
    import lightgbm as lgb

    X, y = _missing_type_data(10)
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 4, "max_depth": 2,
              "seed": 3, "num_threads": 1, "verbose": -1}  # fmt: skip
    train, valid = lgb.Dataset(X[:2000], y[:2000]), lgb.Dataset(X[2000:], y[2000:])
    booster = lgb.train(params, train, 300, valid_sets=[valid], keep_training_booster=True,
                        callbacks=[lgb.early_stopping(5, verbose=False)])  # fmt: skip
    assert 0 < booster.best_iteration < booster.num_trees()
    tables = _assert_equal_to_lightgbm(booster, X)
    assert len(tables.trees) == booster.best_iteration


def test_a_model_the_tables_do_not_cover_falls_back_to_pred_contrib():
    X, y = _missing_type_data(9)
    X[:, 2] = np.digitize(X[:, 2], [-1.0, 0.0, 1.0])  # categories 0-3, still the signal
    categorical = _lgbm(X, y, num_leaves=4, max_depth=2, categorical=[2])
    deep = _lgbm(X, y, num_leaves=64, max_depth=-1, min_child_samples=2)
    for booster, reason in ((categorical, "categorical"), (deep, "internal nodes")):
        with pytest.raises(NotCovered, match=reason):
            ContributionTables.build(booster)
        assert tables_for(booster) is None
        fitted = FittedModel("lightgbm", [f"x{i}" for i in range(5)], booster)
        frame = pd.DataFrame(X[:500], columns=fitted.feature_columns)
        contrib, base = fitted.contributions(frame, tables=True)
        want = _reference(booster, X[:500])
        assert (contrib == want[:, :-1]).all() and (base == want[:, -1]).all()  # LightGBM's own


def test_tables_are_built_once_per_model_in_a_process(product):
    fitted, _ = product
    first = tables_for(fitted.estimator)
    assert first is not None and tables_for(fitted.estimator) is first
    import lightgbm as lgb

    reloaded = lgb.Booster(model_str=fitted.estimator.model_to_string())  # as a worker loads it
    assert tables_for(reloaded) is first


def test_predictions_and_top_explanations_equal_those_from_pred_contrib(product):
    """What the scoring job writes (rounded contributions, probabilities, responders) is
    the same whether the contributions are looked up or computed by LightGBM."""
    from scipy.special import expit

    from msc_response.modeling.metrics import predicted_responder

    fitted, X = product
    ids = np.array([f"P{i}" for i in range(len(X))], dtype=object)
    table = predict_features(fitted, X, ids, 0.5, explain=3)
    want = _reference(fitted.estimator, X.to_numpy())
    p = expit(want[:, -1] + want[:, :-1].sum(axis=1))
    np.testing.assert_array_equal(table["probability"], np.round(p, 6))
    np.testing.assert_array_equal(table["predicted_response"], predicted_responder(p, 0.5))
    top = top_contributions(want[:, :-1].copy(), X, 3)
    pd.testing.assert_frame_equal(
        table[top.columns].reset_index(drop=True), top.reset_index(drop=True)
    )
    # without explanations (and under each trial regimen): LightGBM's predict, bit for bit
    plain = predict_features(fitted, X, ids, 0.5, regimens=True)
    p = fitted.estimator.predict(X.to_numpy(), num_threads=1)
    np.testing.assert_array_equal(plain["probability"], np.round(p, 6))
    np.testing.assert_array_equal(plain["predicted_response"], predicted_responder(p, 0.5))
    assert np.array_equal(fitted.predict_matrix(X.to_numpy(), tables=True), p)


def test_goes_left_is_lightgbms_decision_rule():
    """The rule as LightGBM's tree.h states it, on its edge cases (the tables rest on it)."""
    values = np.array([np.nan, 0.0, -0.0, 1e-36, ZERO, np.nextafter(ZERO, 1.0), -1.0, 1.0, np.inf])
    node = tree_tables._Node
    none = tree_tables.goes_left(node(0, 0.5, "None", False), values)
    assert none.tolist() == [True, True, True, True, True, True, True, False, False]  # NaN is 0.0
    nan_right = tree_tables.goes_left(node(0, 0.5, "NaN", False), values)
    assert nan_right.tolist() == [False, True, True, True, True, True, True, False, False]
    zero_right = tree_tables.goes_left(node(0, 0.5, "Zero", False), values)
    assert zero_right.tolist() == [False, False, False, False, False, True, True, False, False]
    zero_left = tree_tables.goes_left(node(0, -2.0, "Zero", True), values)
    assert zero_left.tolist() == [True, True, True, True, True, False, False, False, False]
