"""The benefit section of the training report: numbers with intervals, figures, no patient ids."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from msc_response.config import load_config
from msc_response.features import build_features
from msc_response.modeling import benefit as bm
from msc_response.modeling import benefit_validation as bv
from msc_response.reporting.benefit_sections import add_benefit_section, plot_benefit_forest
from msc_response.reporting.page import Page
from msc_response.simulator import rct, simulate


def test_benefit_section_shows_effects_with_intervals_and_no_patient_ids(tmp_path):
    study = simulate("rct", 240, 3, rct_design=rct.RctDesign(mx1_role="predictive"))
    fs = build_features(load_config({"name": "r"}), study)
    data = bm.benefit_data(fs, study.patients, "arm", rct.CONTROL_ARM.name)
    v = bv.validate_benefit(data.X, data.treated, data.y, data.mx1, n_boot=30)
    page = Page("benefit", simulated=True)
    add_benefit_section(page, v)
    html = (page.write(tmp_path)).read_text()
    assert "Benefit over standard care" in html and "Is MX1+ a predictive biomarker?" in html
    assert re.search(r"average treatment effect.*95% CI", html)
    assert "c-for-benefit" in html and "Eavg-for-benefit" in html
    assert "not applicable: Eavg-for-benefit" in html  # no interval that failed its coverage
    assert html.count("<img") == 3  # calibration for benefit, MX1+ and risk forest plots
    lr = v.interaction["interaction_lr"]
    assert (
        "parametric-bootstrap p-value): "
        f"{v.interaction['verdict']} (p = {lr['p']:.3f}, {lr['draws']} draws)" in html
    )
    assert "SIM-" not in html  # aggregates only


def test_forest_plot_draws_one_row_per_group_with_its_interval():
    table = pd.DataFrame({"group": [1, 2], "n": [10, 12], "observed": [0.1, 0.3], "low": [-0.2, 0.0],
                          "high": [0.4, 0.6], "predicted": [0.15, 0.25]})  # fmt: skip
    ax = plot_benefit_forest(table, ate=0.2, label="MX1+")
    labels = {float(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    assert labels == {1.0: "MX1+ Q1 (n=10)", 0.0: "MX1+ Q2 (n=12)"}  # the first group on top
    marker = ax.containers[0].lines[0]  # the observed values, top row first
    np.testing.assert_allclose(marker.get_xdata(), [0.1, 0.3])
    np.testing.assert_allclose(marker.get_ydata(), [1, 0])


def test_several_regimens_get_their_own_effects_beside_the_pooled_section(tmp_path):
    from msc_response.config import config_from_dict
    from msc_response.pipelines.benefit import benefit_summary

    design = rct.RctDesign(regimens=(rct.parse_regimen("1.0e8x3"), rct.parse_regimen("2.0e8x3")),
                           ratio=(1, 1, 1))  # fmt: skip
    study = simulate("rct", 300, 9, rct_design=design)
    config = config_from_dict({"name": "b", "benefit": {"bootstrap": 0}})
    flat, v = benefit_summary(config, build_features(config, study), study.patients)
    page = Page("benefit", simulated=True)
    add_benefit_section(page, v)
    html = (page.write(tmp_path)).read_text()
    assert "Average treatment effect of each randomised regimen" in html
    for regimen, a in flat["ate_by_regimen"].items():
        rd = v.by_regimen[regimen]
        row = re.search(rf"<td>{re.escape(regimen)}</td><td>([^<]*)</td><td>(\d+)/(\d+)</td>", html)
        assert row is not None, regimen
        assert int(row.group(3)) == a["n_treated"] == rd.n1 and int(row.group(2)) == rd.x1
        assert f"{100 * a['ate']:.1f}" in row.group(1)
