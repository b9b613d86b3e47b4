"""fit(): the in-memory half of training (no MLflow), its summary, plots and the gate rules."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from conftest import statistical_warnings
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.features import build_features
from msc_response.modeling import curves, gate, metrics, validation
from msc_response.modeling.fit import fit
from msc_response.modeling.summary import NOT_APPLICABLE

FAST = {"repeats": 2, "bootstrap": 20, "n_jobs": 1}


@pytest.fixture(scope="module")
def result(trial_dir):
    config = config_from_dict({"name": "fit-test", "model": FAST})
    with statistical_warnings("below Riley's minimum sample size"):
        return fit(config, build_features(config, trial_dir), simulated=True)


def test_fit_validates_every_model_and_refits_the_primary(result):
    assert set(result.models) == {"lightgbm", "logistic_rcs", "baseline_score", "baseline_regimen"}
    assert result.primary.name == "logistic_rcs" and result.fitted.kind == "logistic"
    # constant and duplicate columns are dropped, recorded, and not Riley parameters
    assert set(result.dropped_columns) == {"baseline_dialysis", "interval_days"}
    assert not set(result.dropped_columns) & set(result.fitted.feature_columns)
    s = result.summary()
    assert s["riley_parameters"] == len(result.feature_columns) == len(s["feature_columns"])
    assert s["dropped_columns"] == result.dropped_columns
    assert s["exploratory"] is True and s["primary_model"] == "logistic_rcs"
    assert s["exploratory_models"] == ["lightgbm"]
    assert s["models"]["lightgbm"]["status"] == "exploratory"


def fit_in_one_and_in_two_workers(trial_dir):
    """The same experiment fitted in this process and by two workers (fresh fits each call)."""
    config = config_from_dict({"name": "fit-test", "model": FAST})
    features = build_features(config, trial_dir)
    with statistical_warnings("below Riley's minimum sample size"):
        one = fit(config, features, simulated=True)
        two = fit(config_from_dict({"name": "fit-test", "model": {**FAST, "n_jobs": 2}}), features,
                  simulated=True)  # fmt: skip
    return one, two


def test_the_numbers_and_figures_do_not_depend_on_the_number_of_workers(trial_dir):
    one, two = fit_in_one_and_in_two_workers(trial_dir)
    assert json.dumps(one.summary()) == json.dumps(two.summary())  # every number, to the bit
    for name, a in one.models.items():
        b = two.models[name]
        np.testing.assert_array_equal(a.oof, b.oof)
        np.testing.assert_array_equal(a.bootstrap.predictions, b.bootstrap.predictions)
        exact = lambda v: json.dumps(v, default=vars)  # noqa: E731 - repr of floats, NaN included
        assert exact(a.bootstrap.oob) == exact(b.bootstrap.oob)
        assert exact(a.bootstrap.apparent) == exact(b.bootstrap.apparent)
        assert exact(a.optimism) == exact(b.optimism)
    assert one.figure_png("roc") == two.figure_png("roc")  # the same picture, byte for byte
    assert one.figure_png("shap_beeswarm") == two.figure_png("shap_beeswarm")  # seeded jitter


def test_every_models_fits_in_one_queue_give_each_models_own_numbers(trial_dir):
    # fit() sends every model's fits to one queue of workers, slowest model first, and refits
    # the primary meanwhile: the numbers are those of validating each model alone
    from msc_response.modeling.fit import ValidationPlan, refit, validate_model, validate_models
    from msc_response.modeling.models import model_specs, screen_columns

    config = config_from_dict({"name": "fit-test", "model": {**FAST, "n_jobs": 2}})
    features = build_features(config, trial_dir)
    kept, _ = screen_columns(features.table[features.feature_columns].astype(float))
    X, y = features.table[kept].astype(float), features.table["response"].to_numpy(dtype=int)
    specs = model_specs(config, kept)[::-1]  # baselines first: the queue reorders, the result not
    plan = ValidationPlan.for_data(config, len(y))
    done = []
    together, fitted = validate_models(specs, X, y, config=config, plan=plan, refit_spec=specs[-1],
                                       advance=lambda: done.append(1))  # fmt: skip
    assert list(together) == [s.name for s in specs] and len(done) == len(specs)
    exact = lambda v: json.dumps(v, default=vars)  # noqa: E731 - repr of floats, NaN included
    for spec in specs:
        alone, mine = validate_model(spec, X, y, config=config, plan=plan), together[spec.name]
        np.testing.assert_array_equal(alone.oof, mine.oof)
        np.testing.assert_array_equal(alone.bootstrap.predictions, mine.bootstrap.predictions)
        assert exact(alone.cv.values) == exact(mine.cv.values)
        assert exact(alone.bootstrap.oob) == exact(mine.bootstrap.oob)
    alone = refit(specs[-1], X, y, config=config)
    np.testing.assert_array_equal(alone.predict_proba(X), fitted.predict_proba(X))


def test_figures_drawn_by_the_workers_meanwhile_equal_those_drawn_here(trial_dir):
    here, workers = fit_in_one_and_in_two_workers(trial_dir)
    workers.render_figures(wait=False)  # the workers draw while this process goes on
    assert workers._pending is not None
    curve = workers.roc_curve("lightgbm")  # waits for them, and keeps the curves they made
    assert workers._pending is None
    pd.testing.assert_frame_equal(curve, here.roc_curve("lightgbm"))
    made_by_workers = {("roc_band", "lightgbm"), ("calibration", "logistic_rcs"),
                       ("decision", "lightgbm"), ("shap",)}  # fmt: skip
    assert made_by_workers <= set(workers._memo)  # not asked for here yet: the workers' own
    for name in here.models:  # every figure, byte for byte
        for kind in ("roc", "calibration", "decision_curve"):
            assert workers.figure_png(kind, name) == here.figure_png(kind, name), (kind, name)
    for kind in ("shap_beeswarm", "shap_bar"):
        assert workers.figure_png(kind) == here.figure_png(kind), kind


def test_curves_and_figures_are_made_once_and_handed_out_as_copies(result):
    curve = result.roc_curve("lightgbm")
    curve["tpr"] = 0.0  # a caller's change does not reach the next caller
    assert result.roc_curve("lightgbm")["tpr"].max() == pytest.approx(1.0)
    assert result.figure_png("calibration", "lightgbm") is result.figure_png(
        "calibration", "lightgbm"
    )
    assert result.figure_png("roc", "lightgbm").startswith(b"\x89PNG")
    assert result.figure_png("roc", "lightgbm") != result.figure_png("roc", "logistic_rcs")


def test_every_metric_in_the_summary_has_an_interval(result):
    s = result.summary()
    names = [*metrics.PERFORMANCE, *map(metrics.net_benefit_name, s["net_benefit_thresholds"])]
    for name in names:
        value, ci = s[f"validated_{name}"], s[f"validated_{name}_ci"]
        if value is not None:
            assert ci[0] <= value <= ci[1], name
    lo, hi = s["validated_roc_auc_ci"]
    assert 0 <= lo < s["validated_roc_auc"] < hi <= 1
    assert s["validated_roc_auc"] == pytest.approx(
        result.primary.bootstrap.roc_auc_632plus, abs=1e-4
    )


def test_harrell_is_not_applicable_to_trees(result):
    s = result.summary()
    assert s["models"]["lightgbm"]["optimism_corrected_roc_auc"] == NOT_APPLICABLE
    assert isinstance(s["models"]["logistic_rcs"]["optimism_corrected_roc_auc"], float)


def test_plot_numbers_are_the_reported_numbers_and_nothing_global_changes(result):
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    ax = result.plot_roc()
    assert curves.area(result.roc_curve()) == pytest.approx(result.primary.roc_auc, abs=1e-9)
    assert f"{result.primary.roc_auc:.2f}" in ax.get_legend().get_texts()[0].get_text()
    cal = result.plot_calibration()  # the drawn line is the cross-validated curve
    curve = curves.calibration_curve(result.y, result.primary.oof)
    np.testing.assert_allclose(cal.lines[0].get_ydata(), curve["observed"])
    assert (
        f"slope {result.primary.cv.values[metrics.CALIBRATION_SLOPE]:.2f}"
        in cal.lines[0].get_label()
    )
    assert cal.get_xlim() == (0, 1) and cal.get_ylim() == (0, 1)
    dc = result.decision_curve()
    drawn = result.plot_decision_curve()
    assert [line.get_label() for line in drawn.lines] == [
        result.primary.name,
        "treat all",
        "treat none",
    ]
    np.testing.assert_allclose(drawn.lines[0].get_ydata(), dc["model"])
    shap_ax = result.plot_shap(kind="bar")  # one bar per feature, named
    named = {t.get_text() for t in shap_ax.get_yticklabels()}
    assert len(named & set(result.fitted.feature_columns)) >= min(
        10, len(result.fitted.feature_columns)
    )
    at_half = dc.loc[np.isclose(dc["threshold"], 0.5)].iloc[0]
    assert at_half["model"] == pytest.approx(result.primary.cv.values["net_benefit_at_50"])
    assert (dc["lower"] <= dc["model"]).all() and (dc["model"] <= dc["upper"]).all()
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures


def test_the_beeswarm_draws_every_patient_up_to_the_cap_and_a_seeded_sample_beyond(
    result, monkeypatch
):
    from msc_response import plotting
    from msc_response.modeling import explain

    n, seed = len(result.y), result.config.model.seed
    contrib, base = result.shap_values()
    X = result.X[result.fitted.feature_columns]

    def png(ax):
        return plotting.png_bytes(ax, simulated=True)

    def every_patient():  # what the beeswarm drew before the cap: every patient, seeded jitter
        with plotting.fixed_global_random(seed):
            return explain.plot_shap(contrib, base, X, kind="beeswarm")

    assert n <= plotting.MAX_PATIENT_DOTS and result.shap_sample() is None
    assert png(result.plot_shap()) == png(every_patient())  # below the cap: byte for byte as before
    monkeypatch.setattr(plotting, "MAX_PATIENT_DOTS", 20)
    rows = result.shap_sample()
    assert len(rows) == 20 == len(set(rows)) and list(rows) == sorted(rows)
    assert np.array_equal(rows, result.shap_sample())  # seeded: the same patients every time
    ax = result.plot_shap()
    dots = sum(len(c.get_offsets()) for c in ax.collections)
    assert dots == 20 * min(15, X.shape[1])  # one dot per sampled patient and feature shown
    assert ax.get_title() == f"Each dot a patient: a random 20 of the {n} patients (seed {seed})"
    assert png(ax) != png(every_patient())
    assert (
        result.plot_shap(kind="bar").get_title() == ""
    )  # the bar chart: mean |SHAP| over everyone


def test_the_pages_patient_scatters_say_when_they_show_a_sample(result, monkeypatch):
    from msc_response import plotting
    from msc_response.reporting import model_sections
    from msc_response.reporting.page import Page

    def captions(section):
        return {f.alt: f.caption for f in section.figures()}

    def shap_and_stability():
        page = Page("t", simulated=True)
        model_sections.add_stability(page, result)
        model_sections.add_shap(page, result)
        return {**captions(page.sections[0]), **captions(page.sections[1])}, page

    n, seed = len(result.y), result.config.model.seed
    every, _ = shap_and_stability()
    assert set(every.values()) == {None}  # below the cap: no word about a sample
    monkeypatch.setattr(plotting, "MAX_PATIENT_DOTS", 20)
    result._memo.pop(("png", "shap_beeswarm", None), None)  # drawn again under the smaller cap
    sampled, page = shap_and_stability()
    words = f"a random 20 of the {n} patients (seed {seed})"
    assert words in sampled["SHAP beeswarm of the primary model"]
    assert words in sampled[next(k for k in sampled if k.startswith("SHAP dependence"))]
    assert words in sampled[f"prediction instability plot of {result.primary.name}"]
    draw = page.sections[0].figures()[0].figure  # drawn where the page renders: draw it here
    instability = draw()  # dots of the sample, lines of everyone
    assert len(instability.collections[0].get_offsets()) == 20 * result.plan.n_boot
    assert len(instability.lines[0].get_xdata()) == n
    result._memo.pop(("png", "shap_beeswarm", None), None)


def test_the_gate_compares_on_the_same_bootstrap_samples(result):
    cmp = result.baseline_comparison
    assert (
        cmp.reference
        == max(
            (m for m in result.models.values() if m.spec.role == "baseline"),
            key=lambda m: m.roc_auc,
        ).name
    )
    diff = validation.paired_difference(
        result.primary.bootstrap, result.models[cmp.reference].bootstrap
    )
    assert cmp.difference == diff and cmp.passed == (diff.ci[0] > 0)


def _comparison(low: float, margin: float) -> gate.Comparison:
    return gate.Comparison(
        "m", "ref", validation.Difference(low + 0.1, 0.05, (low, low + 0.2)), margin
    )


def test_gate_rules():
    ok, bad = _comparison(0.01, 0.0), _comparison(-0.01, 0.0)
    below = gate.decide(n=42, riley_min_n=1668, baseline=ok, champion=None)
    assert below.aliases == ("candidate", "exploratory") and not below.promoted
    assert "Riley" in below.reason
    assert gate.decide(n=2000, riley_min_n=1668, baseline=ok, champion=None).promoted
    assert not gate.decide(n=2000, riley_min_n=1668, baseline=bad, champion=None).promoted
    near = _comparison(-0.015, gate.NON_INFERIORITY_MARGIN)  # within the margin: non-inferior
    worse = _comparison(-0.03, gate.NON_INFERIORITY_MARGIN)
    assert gate.decide(n=2000, riley_min_n=1668, baseline=ok, champion=near).promoted
    decision = gate.decide(n=2000, riley_min_n=1668, baseline=ok, champion=worse)
    assert not decision.promoted and "worse than the current champion" in decision.reason


def test_an_endpoint_without_non_responders_is_a_data_error(study_dir):
    config = config_from_dict({"name": "x", "assume": {"encephalopathy": 0, "dialysis": 0}})
    with pytest.raises(DataError, match="no non-responders among 3 eligible patients"):
        fit(config, build_features(config, study_dir))


def test_primary_must_be_a_candidate():
    with pytest.raises(ConfigError, match="model.primary"):
        config_from_dict(
            {"name": "x", "model": {"candidates": ["logistic_l2"], "primary": "lightgbm"}}
        )
    assert (
        config_from_dict({"name": "x", "model": {"candidates": ["lightgbm"]}}).model.primary
        == "lightgbm"
    )
    with pytest.raises(ConfigError, match="model.net_benefit_thresholds"):
        config_from_dict({"name": "x", "model": {"net_benefit_thresholds": [1.5]}})
