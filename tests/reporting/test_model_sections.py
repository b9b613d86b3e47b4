"""Numbers of the model sections, against worked examples: DeLong, instability, subgroups, the equation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from msc_response import simulate
from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling.fitted import FittedModel
from msc_response.modeling.models import ModelSpec, make_estimator, storable
from msc_response.reporting.equation import logistic_equation
from msc_response.reporting.external import external_performance
from msc_response.reporting.intervals import auroc_delong
from msc_response.reporting.stability import instability
from msc_response.reporting.subgroups import subgroup_performance


def test_delong_worked_example_and_brute_force():
    # responders 0.9, 0.4; non-responders 0.6, 0.1: V10 = (1, 0.5), V01 = (0.5, 1)
    # AUROC 0.75; variance = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2 = 0.125
    a = auroc_delong([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    assert a.estimate == 0.75 and a.se**2 == pytest.approx(0.125)
    # logit scale: logit(0.75) +/- 1.96 x sqrt(0.125) / (0.75 x 0.25), back-transformed
    half = 1.96 * np.sqrt(0.125) / 0.1875
    assert (a.low, a.high) == (
        pytest.approx(1 / (1 + np.exp(-(np.log(3) - half)))),
        pytest.approx(1 / (1 + np.exp(-(np.log(3) + half)))),
    )
    assert a.text() == "0.750 (0.069-0.992)"
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 60), np.round(rng.random(60), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    var = psi.mean(1).var(ddof=1) / len(pos) + psi.mean(0).var(ddof=1) / len(neg)
    b = auroc_delong(y, p)
    assert b.estimate == pytest.approx(psi.mean(), abs=1e-12) and b.se**2 == pytest.approx(
        var, rel=1e-12
    )
    c = auroc_delong([1, 1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5], min_per_class=5)
    assert np.isnan(c.estimate) and c.why_not.startswith("too few (2 responders, 3 non-responders")


def test_delong_gives_no_zero_width_interval():
    """A standard error of 0 (perfect or perfectly wrong ranking, every prediction tied): the
    estimate without an interval, and why - in the subgroup table and in external validation."""
    y = [1, 1, 1, 0, 0, 0]
    for p, est, why in [([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], 1.0, "every responder ranked above every non-responder"),
                        ([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 0.0, "every responder ranked below every non-responder"),
                        ([0.5] * 6, 0.5, "every prediction tied")]:  # fmt: skip
        a = auroc_delong(y, p)
        assert (a.estimate, a.se, a.why_not, a.why_no_interval) == (est, 0.0, None, why)
        assert np.isnan(a.low) and np.isnan(a.high)
        assert a.text() == f"{est:.3f} (no interval: {why})"
    t = subgroup_performance(
        pd.DataFrame({"sex": ["F"] * 6}), y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], min_per_class=3
    )
    assert (
        t.loc[0, "note"] == "AUROC: no interval (every responder ranked above every non-responder)"
    )
    ev = external_performance(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], n_boot=20)
    assert np.isnan(ev.intervals["roc_auc"][0])
    assert ev.problems["roc_auc"] == "no interval: every responder ranked above every non-responder"


def test_ici_e50_e90_of_an_external_cohort_are_shown_without_an_interval_and_say_why():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.1, 0.9, 200)
    y = (rng.random(200) < p).astype(int)
    ev = external_performance(y, p, n_boot=50)
    for name in ("ici", "e50", "e90"):
        assert np.isfinite(ev.values[name]) and name not in ev.intervals
        assert ev.problems[name].startswith("no interval: bootstrap intervals of ICI, E50 and E90")
    lo, hi = external_performance(y, p, n_boot=50, unproven=True).intervals["ici"]
    assert lo <= ev.values["ici"] <= hi
    assert ev.intervals["brier"][0] < ev.values["brier"] < ev.intervals["brier"][1]


def test_instability_worked_example():
    # patient 1: |0.3-0.2|, |0.1-0.2| -> 0.1; patient 2: 0, |0.2-0.6| -> 0.2; MAPE 0.15
    # per model: (0.1 + 0)/2 = 0.05, (0.1 + 0.4)/2 = 0.25
    s = instability([0.2, 0.6], [[0.3, 0.6], [0.1, 0.2]])
    assert s.mape == pytest.approx(0.15) and s.patients["mape"].tolist() == pytest.approx(
        [0.1, 0.2]
    )
    assert s.mape_range == (pytest.approx(0.05 + 0.025 * 0.2), pytest.approx(0.05 + 0.975 * 0.2))
    assert s.max_patient_mape == pytest.approx(0.2) and s.n_models == 2
    with pytest.raises(ValueError, match="one per patient"):
        instability([0.2, 0.6], [[0.3, 0.6, 0.1]])


def test_subgroups_count_and_say_too_few():
    groups = pd.DataFrame({"sex": ["F"] * 12 + ["M"] * 4, "arm": ["A"] * 16})
    y = np.array([1, 0] * 6 + [1, 1, 0, 1])
    p = np.linspace(0.1, 0.9, 16)
    t = subgroup_performance(groups, y, p).set_index(["subgroup", "level"])
    assert t.loc[("sex", "F"), "n"] == 12 and t.loc[("sex", "F"), "responders"].startswith(
        "6/12 (50.0%"
    )
    assert t.loc[("sex", "F"), "auroc"] == pytest.approx(auroc_delong(y[:12], p[:12]).estimate)
    assert np.isnan(t.loc[("sex", "M"), "auroc"]) and t.loc[("sex", "M"), "note"].startswith(
        "too few"
    )
    assert t.loc[("sex", "M"), "predicted"] == pytest.approx(p[12:].mean())
    assert t.loc[("arm", "A"), "n"] == 16
    # a model that gives one group a single probability: its mean has no interval, and says why
    t = subgroup_performance(groups, y, np.r_[p[:12], [0.4] * 4]).set_index(["subgroup", "level"])
    assert np.isnan(t.loc[("sex", "M"), "predicted_low"])
    assert t.loc[("sex", "M"), "note"].endswith(
        "; mean predicted: no interval (all 4 values equal)"
    )
    assert t.loc[("sex", "F"), "note"] == ""


def test_logistic_equation_reproduces_the_model():
    config = config_from_dict({"name": "eq"})
    fs = build_features(config, simulate("trial", n_patients=66, seed=4))
    cols = [c for c in fs.feature_columns if fs.table[c].nunique() > 1]
    X = fs.table[cols].astype(float)
    X.iloc[0, 2] = np.nan  # a missing value is imputed as the model does
    y = fs.table["response"].to_numpy(dtype=int)
    est = make_estimator(ModelSpec("l", "logistic", "candidate", tuple(cols)), config, 1, 20).fit(
        X, y
    )
    fitted = FittedModel.from_estimator("logistic", cols, storable(est))
    eq = logistic_equation(fitted, fs.feature_spec)
    assert np.abs(eq.logit(X) - logit(fitted.predict_proba(X))).max() < 1e-9
    assert eq.text().startswith("logit(p) = ") and list(eq.terms["feature"]) == cols
    assert eq.terms.set_index("feature").loc["baseline_bilirubin", "unit"] == "mg/dL"
    with pytest.raises(ValueError, match="expected a logistic model"):
        logistic_equation(FittedModel("lightgbm", cols, None))
