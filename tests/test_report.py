import numpy as np
import pandas as pd
import pytest

from msc_response import report
from msc_response.explain import global_importance, top_contributions


def test_decision_curve_numbers():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    dc = report.decision_curve(y, p, thresholds=[0.5]).iloc[0]
    assert dc["model"] == pytest.approx(2 / 4)  # two true positives, no false positive
    assert dc["treat_all"] == pytest.approx(0.5 - 0.5 * 1.0)
    assert dc["treat_none"] == 0


def test_calibration_curve_bins_and_roc():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    cc = report.calibration_curve(y, p, n_bins=3)
    assert cc["n"].tolist() == [2, 2, 2]
    assert cc["predicted"].tolist() == pytest.approx([0.15, 0.5, 0.85])
    roc = report.roc_curve(y, p)
    assert roc["fpr"].iloc[0] == 0 and roc["tpr"].iloc[-1] == 1


def test_plots_are_saved_and_labelled_when_simulated(tmp_path):
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.6])
    ax = report.plot_decision(report.decision_curve(y, p), "m")
    fig = ax.figure
    report.save_figure(ax, tmp_path / "dc.png", simulated=True)
    assert (tmp_path / "dc.png").stat().st_size > 1000
    assert fig._suptitle.get_text() == report.SIMULATED_LABEL


def test_top_contributions_order_and_global_importance():
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    contrib = np.array([[0.1, -0.5, 0.2], [0.3, 0.0, -0.1]])
    top = top_contributions(contrib, X, 2)
    assert (
        top.loc[0, "feature_1"] == "b"
        and top.loc[0, "value_1"] == 3.0
        and top.loc[0, "contribution_1"] == -0.5
    )
    assert top.loc[0, "feature_2"] == "c"
    assert top.loc[1, "feature_1"] == "a" and top.loc[1, "feature_2"] == "c"
    imp = global_importance(contrib, X.columns)
    assert imp["feature"].tolist() == ["b", "a", "c"]
    with pytest.raises(ValueError, match="k: expected >= 1"):
        top_contributions(contrib, X, 0)
