"""The study report's numbers (against direct counts and scipy) and its page (escaping, SIMULATED, no ids)."""

from __future__ import annotations

import dataclasses
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import write_study
from msc_response import load_study, simulate
from msc_response.config import Endpoint, config_from_dict
from msc_response.domain import TRIAL_ARMS
from msc_response.features import build_features
from msc_response.reporting import figures, paper_view, study_tables
from msc_response.reporting.build import write_study_report
from msc_response.reporting.intervals import mean, proportion
from msc_response.reporting.page import SIMULATED_BANNER, Page


@pytest.fixture(scope="module")
def trial():
    """A SIMULATED trial of 66 patients (twice the trial's arms) with its config and paper labels."""
    study = simulate("trial", n_patients=66, seed=11)
    config = config_from_dict({"name": "cp-report"})
    return config, study, paper_view.endpoint_labels(config, study)


def test_proportion_is_scipy_exact_interval_and_the_trial_rates():
    for x, n in [(0, 5), (3, 6), (8, 9), (4, 9), (8, 15), (9, 9), (1, 1)]:
        ci = stats.binomtest(x, n).proportion_ci(method="exact")
        p = proportion(x, n)
        assert (p.low, p.high) == (ci.low, ci.high)
    # domain.md: 8/9, 4/9, 8/15 have exact 95% intervals 51.8-99.7%, 13.7-78.8%, 26.6-78.7%
    assert proportion(8, 9).text() == "8/9 (88.9%; 51.8-99.7%)"
    assert proportion(4, 9).text() == "4/9 (44.4%; 13.7-78.8%)"
    assert proportion(8, 15).text() == "8/15 (53.3%; 26.6-78.7%)"
    assert proportion(0, 0).text() == "0/0 (no patients)"
    with pytest.raises(ValueError, match="x: expected"):
        proportion(5, 4)


def test_mean_interval_is_the_t_interval_and_says_why_not():
    v = np.array([-2.0, -1.0, 0.0, -1.0, 1.0, np.nan])
    m = mean(v)
    lo, hi = stats.t.interval(0.95, 4, loc=np.nanmean(v), scale=stats.sem(v[:5]))
    assert (m.n, m.mean) == (5, pytest.approx(-0.6)) and (m.low, m.high) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    one = mean([3.0])
    assert (
        one.why_not == "one value" and np.isnan(one.low) and "no interval: one value" in one.text()
    )


def test_mean_of_equal_values_has_no_zero_width_interval():
    """As R's t.test ("data are essentially constant"): a zero-width interval would claim
    certainty; 5 equal changes in one arm missed its true mean in 17% of simulated arms."""
    same = mean([-1.0, -1.0, -1.0, -1.0, -1.0, np.nan])
    assert (same.n, same.mean, same.why_not) == (5, -1.0, "all 5 values equal")
    assert np.isnan(same.low) and np.isnan(same.high)
    assert same.text() == "-1.00 (no interval: all 5 values equal), n=5"
    assert mean([0.0, 0.0]).why_not == "all 2 values equal"
    barely = mean([0.1, 0.1, 0.1 + 1e-9])  # values that differ at all keep their interval
    assert barely.why_not is None and barely.low < barely.mean < barely.high


def test_responders_by_arm_equal_direct_counts_of_the_simulator_labels(trial):
    config, study, labels = trial
    truth = study.truth.set_index("patient_id")
    for key in ("child_pugh", "meld", "albumin"):
        table = paper_view.responders_by_arm(labels[key]).set_index("arm")
        # the simulator's y_* are the labels its own scores give on the written labs
        direct = (
            truth.loc[labels[key]["patient_id"]].groupby("arm")[f"y_{key}"].agg(["sum", "size"])
        )
        for arm in TRIAL_ARMS:
            row = table.loc[arm.name]
            assert (row["responders"], row["n"]) == (
                direct.loc[arm.name, "sum"],
                direct.loc[arm.name, "size"],
            )
            ci = stats.binomtest(int(row["responders"]), int(row["n"])).proportion_ci(
                method="exact"
            )
            assert (row["ci_low"], row["ci_high"]) == (ci.low, ci.high)
        assert (
            table.loc[paper_view.ALL, "responders"]
            == truth.loc[labels[key]["patient_id"], f"y_{key}"].sum()
        )
        single = [a.name for a in TRIAL_ARMS if a.n_infusions == 1]
        assert table.loc[paper_view.SINGLE, "n"] == direct.loc[single, "size"].sum()
        assert list(table.index[: len(TRIAL_ARMS)]) == [a.name for a in TRIAL_ARMS]


def test_labels_come_from_the_feature_builder_with_the_endpoint_swapped_in(trial):
    config, study, labels = trial
    meld = build_features(dataclasses.replace(config, endpoint=Endpoint("meld")), study)
    assert labels["meld"]["response"].tolist() == meld.table["response"].astype(int).tolist()
    change = paper_view.change_by_arm(labels["meld"]).set_index("arm")
    assert change.loc[paper_view.ALL, "mean"] == pytest.approx(meld.table["endpoint_change"].mean())
    assert change.loc[paper_view.ALL, "n"] == len(meld.table)


def test_sensitivity_endpoint_two_points_or_a_better_class():
    ep = Endpoint("child_pugh", "decrease", 1.0)
    #           C->C -2   C->B -1   B->B -1  B->A -1   A->A 0   B->C +1
    base, fu = [12, 10, 9, 7, 6, 9], [10, 9, 8, 6, 6, 10]
    assert paper_view.sensitivity_response(ep, base, fu).tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    meld = Endpoint("meld", "decrease", 1.0)
    assert paper_view.sensitivity_response(meld, [20, 20], [18, 19]).tolist() == [1.0, 0.0]
    assert np.isnan(paper_view.sensitivity_response(ep, [np.nan], [9])[0])


def test_child_pugh_items_add_up_to_the_labelled_scores(trial):
    config, study, labels = trial
    cp = labels["child_pugh"].set_index("patient_id")
    points = paper_view.item_points(config, study)
    for visit, column in (("baseline", "baseline"), ("followup", "followup")):
        total = points[visit].set_index("patient_id")[list(paper_view.CHILD_PUGH_ITEMS)].sum(axis=1)
        assert (total.loc[cp.index] == cp[column]).all()
    items = paper_view.component_changes(config, study, labels["child_pugh"])
    assert (items[["better", "same", "worse"]].sum(axis=1) == len(cp)).all()


def test_class_shifts_count_every_labelled_patient(trial):
    _, _, labels = trial
    cp = labels["child_pugh"]
    shifts = paper_view.class_shifts(cp)
    assert shifts.to_numpy().sum() == len(cp)
    summary = paper_view.class_shift_summary(cp).set_index("shift")
    better = int(
        np.tril(shifts.to_numpy(), -1).sum()
    )  # rows = baseline A, B, C: below the diagonal is better
    assert summary.loc["better class", "patients"] == better
    assert summary["patients"].sum() == len(cp)


def test_cell_course_means_equal_a_direct_groupby(trial):
    config, study, labels = trial
    course = paper_view.cell_course(study, labels["child_pugh"], last_day=28)
    cells = study.cells.assign(
        patient_id=study.patients["patient_id"].to_numpy()[study.cells["pidx"]]
    )
    cells = cells.merge(study.patients[["patient_id", "arm"]], on="patient_id")
    direct = cells.groupby(["arm", "day"])["fraction"].mean()
    by_arm = course[course["by"] == "arm"].set_index(["group", "day"])["mean"]
    assert by_arm.to_numpy() == pytest.approx(direct.loc[by_arm.index].to_numpy())
    resp = course[
        (course["by"] == "response") & (course["group"] == "responders") & (course["day"] == 7)
    ]
    ids = labels["child_pugh"].loc[labels["child_pugh"]["response"] == 1, "patient_id"]
    day7 = cells[(cells["day"] == 7) & cells["patient_id"].isin(ids)]["fraction"]
    assert resp["n"].item() == len(day7) and resp["mean"].item() == pytest.approx(day7.mean())


def test_flow_table1_missing_and_sample_size_on_a_small_study(tmp_path):
    study = load_study(write_study(tmp_path / "s"))
    config = config_from_dict({"name": "cp-small"})
    fs = build_features(config, study, bad_rows="exclude")
    flow = study_tables.flow_by_arm(study, fs)
    assert flow.loc["patients in input", "total"] == fs.flow["patients_in_input"] == 4
    assert flow.loc["included", "total"] == fs.flow["included"]
    assert flow.filter(like="excluded", axis=0)["total"].sum() == fs.flow["n_excluded"]
    assert flow.loc["patients in input", ["A", "B"]].tolist() == [2, 2]
    t1 = study_tables.table1(study, fs).set_index("characteristic")
    assert t1.loc["patients", "all"] == f"n = {len(fs.table)}"
    miss = study_tables.missingness(fs).set_index("predictor")
    assert miss.loc["baseline_platelets", "missing"] == fs.table["baseline_platelets"].isna().sum()
    ss = study_tables.sample_size(fs)
    assert ss["n"] == len(fs.table) and ss["n_parameters"] == len(fs.feature_columns)


def test_plots_change_nothing_global(trial):
    import matplotlib.pyplot as plt

    config, study, labels = trial
    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    ax = figures.plot_proportions(paper_view.responders_by_arm(labels["child_pugh"]), "cp")
    drawn = [
        figures.plot_changes(paper_view.change_by_arm(labels["meld"]), "meld", "points", ax=None),
        figures.plot_cell_course(
            paper_view.cell_course(study, labels["child_pugh"], last_day=28), "arm"
        ),
        figures.plot_patient_flow(study_tables.flow_by_arm(study, build_features(config, study))),
    ]
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
    assert len(ax.lines) > 0
    changes, course, flow = drawn  # intervals as lines, error bars by day, the flow's boxes
    assert changes.lines and course.containers and flow.texts


def test_page_escapes_text_and_marks_simulated(tmp_path):
    page = Page("a <b> page", simulated=True)
    page.section("one").paragraph("<script>alert(1)</script>").table(pd.DataFrame({"x<": ["<i>"]}))
    text = page.html()
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;i&gt;" in text
    assert SIMULATED_BANNER in text and "<title>SIMULATED - a &lt;b&gt; page</title>" in text
    real = Page("real", simulated=False)
    real.section("one").paragraph("x")
    assert "SIMULATED" not in real.html()
    path = real.write(tmp_path / "out")
    assert path.read_text() == real.html() and oct(path.stat().st_mode & 0o777) == "0o644"


def test_study_report_has_every_section_and_no_patient_id(trial, tmp_path):
    config, study, labels = trial
    path = write_study_report(config, study, tmp_path / "report")
    text = path.read_text()
    for title in ("Source of data", "Eligibility", "Outcome: definition and timing", "Predictors",
                  "Assumptions for missing score components", "Patient flow", "Table 1", "Missing values",
                  "Sample size", "The cohort as the trial reported it", "Model card"):  # fmt: skip
        assert f">{title}" in text, title
    assert "Riley" in text and "not benefit over no treatment" in text and SIMULATED_BANNER in text
    assert not re.search(r"SIM-\d+", text)  # ids never appear: the page is logged to MLflow
    assert text.count("data:image/png;base64,") >= 8
    sens = labels["child_pugh_sensitivity"]["response"]
    assert (
        f"Sensitivity endpoint responders: {proportion(int(sens.sum()), len(sens)).text()}." in text
    )
