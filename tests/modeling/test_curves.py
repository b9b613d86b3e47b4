import matplotlib
import numpy as np
import pandas as pd
import pytest

from msc_response import plotting
from msc_response.modeling import curves
from msc_response.modeling.explain import global_importance, plot_shap, top_contributions
from msc_response.modeling.metrics import roc_auc


def test_decision_curve_numbers():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    dc = curves.decision_curve(y, p, thresholds=[0.5]).iloc[0]
    assert dc["model"] == pytest.approx(2 / 4)  # two true positives, no false positive
    assert dc["treat_all"] == pytest.approx(0.5 - 0.5 * 1.0)
    assert dc["treat_none"] == 0
    # repeats: the curve is the mean of the per-repeat net benefits
    two = curves.decision_curve(y, np.vstack([p, [0.9, 0.2, 0.6, 0.1]]), thresholds=[0.5])
    assert two["model"].iloc[0] == pytest.approx((2 / 4 + (1 / 4 - 1 / 4)) / 2)


def test_roc_curve_area_is_the_mean_per_repeat_auroc_even_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    oof = np.round(rng.random((5, 40)) * 0.5 + y * 0.2, 1)  # many ties
    curve = curves.roc_curve(y, oof)
    assert curves.area(curve) == pytest.approx(np.mean([roc_auc(y, p) for p in oof]), abs=1e-12)
    assert curves.area(curves.roc_curve(y, oof[0])) == pytest.approx(roc_auc(y, oof[0]), abs=1e-12)
    # weighted curves of different patients (the .632+ curve): area = weighted mean AUROC
    pairs = [(y, oof[0]), (y[:20], oof[1, :20]), (y[10:], oof[2, 10:])]
    w = [0.3, 0.5, 0.2]
    expected = sum(wi * roc_auc(yy, pp) for wi, (yy, pp) in zip(w, pairs, strict=True))
    assert curves.area(curves.mean_roc_curve(pairs, w)) == pytest.approx(expected, abs=1e-12)


def test_roc_points_are_scikit_learns_roc_curve_exactly():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(5)
    for _ in range(300):  # ties (scores rounded to 1-3 decimals), tiny and uneven classes
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        p = np.round(rng.random(n), int(rng.integers(1, 4)))
        fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
        ours = curves.roc_points(y, p)
        np.testing.assert_array_equal(ours[0], fpr)
        np.testing.assert_array_equal(ours[1], tpr)


def test_calibration_curve_is_the_mean_of_the_repeats_smoothed_curves():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.1, 0.9, (3, 60))
    y = (rng.random(60) < p[0]).astype(int)
    grid = np.array([0.3, 0.5, 0.7])
    curve = curves.calibration_curve(y, p, grid)
    from msc_response.modeling.calibration import smooth_calibration

    expected = np.mean([smooth_calibration(y, row, grid).observed for row in p], axis=0)
    np.testing.assert_allclose(curve["observed"], expected)
    assert (curve["lower"] <= curve["observed"]).all() and (
        curve["observed"] <= curve["upper"]
    ).all()


def test_plots_change_nothing_global_and_are_saved_labelled(tmp_path):
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    open_figures = plt.get_fignums()
    y, p = np.array([0, 1, 0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.6, 0.8, 0.3])
    axes = [
        plotting.plot_decision(curves.decision_curve(y, p), "m"),
        plotting.plot_roc(curves.roc_curve(y, p), "m"),
        plotting.plot_calibration(curves.calibration_curve(y, p), "m", y=y, p=p),
        plot_shap(np.array([[0.1, -0.2]] * 6), np.zeros(6), pd.DataFrame({"a": p, "b": p})),
    ]
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
    dc, roc, cal = (
        curves.decision_curve(y, p),
        curves.roc_curve(y, p),
        curves.calibration_curve(y, p),
    )
    np.testing.assert_allclose(
        axes[0].lines[0].get_ydata(), dc["model"]
    )  # what is drawn is the numbers
    np.testing.assert_allclose(axes[0].lines[1].get_ydata(), dc["treat_all"])
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == [
        "m",
        "treat all",
        "treat none",
    ]
    np.testing.assert_allclose(axes[1].lines[0].get_xydata(), roc[["fpr", "tpr"]].to_numpy())
    assert axes[1].get_xlabel() == "1 - specificity" and axes[1].get_ylabel() == "sensitivity"
    np.testing.assert_allclose(axes[2].lines[0].get_ydata(), cal["observed"])
    assert axes[2].get_xlim() == (0, 1) and len(axes[2].lines) == 4  # curve, ideal, two rugs
    assert {t.get_text() for t in axes[3].get_yticklabels()} >= {"a", "b"}
    plotting.save_figure(axes[0], tmp_path / "dc.png", simulated=True)
    assert (tmp_path / "dc.png").stat().st_size > 1000
    assert axes[0].figure._suptitle.get_text() == plotting.SIMULATED_LABEL
    _, ax = plt.subplots()  # a caller's own axes are drawn on
    try:
        assert plotting.plot_roc(curves.roc_curve(y, p), "m", ax=ax) is ax
    finally:
        plt.close(ax.figure)


def test_top_contributions_order_and_global_importance():
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    contrib = np.array([[0.1, -0.5, 0.2], [0.3, 0.0, -0.1]])
    top = top_contributions(contrib, X, 2)
    assert top.loc[0, "feature_1"] == "b" and top.loc[0, "value_1"] == 3.0
    assert top.loc[0, "contribution_1"] == -0.5
    assert top.loc[0, "feature_2"] == "c"
    assert top.loc[1, "feature_1"] == "a" and top.loc[1, "feature_2"] == "c"
    imp = global_importance(contrib, X.columns)
    assert imp["feature"].tolist() == ["b", "a", "c"]
    with pytest.raises(ValueError, match="k: expected >= 1"):
        top_contributions(contrib, X, 0)


def test_top_contributions_are_the_first_of_a_stable_sort_with_ties():
    # the k row-wise argmax passes must pick what a stable descending sort of |contribution|
    # picks, ties (equal sizes, +x and -x, zeros) going to the earlier feature
    rng = np.random.default_rng(7)
    contrib = np.round(rng.normal(size=(400, 9)), 1)
    contrib[rng.random(contrib.shape) < 0.3] = 0.0
    X = pd.DataFrame(rng.normal(size=(400, 9)), columns=[f"f{i}" for i in range(9)])
    reference = np.argsort(-np.abs(contrib), axis=1, kind="stable")
    for k in (1, 3, 9):
        top = top_contributions(contrib, X, k)
        for i in range(k):
            picked = top[f"feature_{i + 1}"].cat.codes.to_numpy()
            np.testing.assert_array_equal(picked, reference[:, i])
            np.testing.assert_array_equal(
                top[f"contribution_{i + 1}"], np.round(contrib[np.arange(400), reference[:, i]], 6)
            )
