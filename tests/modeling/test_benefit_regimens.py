"""Benefit of each randomised regimen against the shared control arm, against simulated truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msc_response.config import config_from_dict, load_config
from msc_response.errors import ConfigError, DataError
from msc_response.features import build_features
from msc_response.modeling import benefit as bm
from msc_response.pipelines.benefit import (
    ate_by_regimen,
    benefit_summary,
    regimen_effects,
    study_randomised,
)
from msc_response.simulator import rct, simulate
from msc_response.study.files import is_simulated

#: Two regimens whose true effects differ clearly: one infusion of 0.5e8 cells and three of
#: 2.0e8 (the simulator's dose and repetition coefficients).
REGIMENS = ("0.5e8x1", "2.0e8x3")


@pytest.fixture(scope="module")
def three_arms():
    """3,000 SIMULATED patients randomised 1:1:1; MX1+ predictive (benefit varies with it)."""
    design = rct.RctDesign(regimens=tuple(rct.parse_regimen(r) for r in REGIMENS), ratio=(1, 1, 1),
                           mx1_role="predictive")  # fmt: skip
    study = simulate("rct", 3000, 7, rct_design=design)
    fs = build_features(load_config({"name": "b"}), study)
    data = bm.benefit_data(fs, study.patients, "arm", rct.CONTROL_ARM.name)
    truth = study.truth.set_index(study.truth["patient_id"].astype(str)).loc[data.patient_id]
    return data, truth


def test_each_regimen_is_compared_with_the_shared_control_arm(three_arms):
    data, _ = three_arms
    assert data.regimens == ["MSC 2.0e8 x3", "MSC 5.0e7 x1"]  # sorted, as written in ``arm``
    n_control = int((data.treated == 0).sum())
    for r in data.regimens:
        d = data.versus_control(r)
        assert set(d.arm) == {rct.CONTROL_ARM.name, r}
        assert int((d.treated == 0).sum()) == n_control and d.treated.sum() == (data.arm == r).sum()
        assert len(d.X) == len(d.y) == len(d.patient_id)


@pytest.mark.parametrize("kind", ["risk_constant", "effect_penalised"])
def test_predicted_benefit_per_regimen_tracks_the_true_benefit(three_arms, kind):
    """Each regimen's columns are named by the truth's slug; the mean predicted benefit is the
    true mean within 3 standard errors of a difference of proportions (~0.022 at 1,000 per
    arm); the effect model also follows the MX1+-driven variation within each regimen."""
    data, truth = three_arms
    table = bm.predict_benefit_by_regimen(data, data.X, kind=kind, seed=1, n_boot=0)
    means = {}
    for r in data.regimens:
        s = rct.slug(r)
        pred, true = table[f"predicted_benefit_{s}"], truth[f"true_benefit__{s}"].to_numpy()
        np.testing.assert_allclose(
            pred, table[f"p_response_{s}"] - table[f"p_response_standard_care_vs_{s}"], atol=1e-12
        )
        assert pred.mean() == pytest.approx(true.mean(), abs=0.066), r
        means[r] = (pred.mean(), true.mean())
        if kind == "effect_penalised" and true.std() > 0:  # one infusion: no effect at all
            assert np.corrcoef(pred, true)[0, 1] > 0.3, r
    (a_pred, a_true), (b_pred, b_true) = means.values()
    assert np.sign(a_pred - b_pred) == np.sign(a_true - b_true)
    assert abs(a_true - b_true) > 0.3  # the regimens truly differ: the check above has teeth


def test_exported_per_regimen_model_predicts_as_the_fitted_ones(three_arms):
    data, truth = three_arms
    X = data.X.copy()
    X.iloc[:5, 0] = np.nan  # missing values: the training medians, as in the pipeline
    data = bm.BenefitData(data.patient_id, X, data.treated, data.y, data.mx1, data.arm)
    doc = bm.export_by_regimen(data, seed=2, n_boot=20)
    assert [c["name"] for c in doc["regimens"]] == data.regimens and "model" not in doc
    doc = bm.check_exported(json.loads(json.dumps({**doc, "provenance": {}})), "test")
    table = bm.apply_exported(doc, X.iloc[:300])
    reference = bm.predict_benefit_by_regimen(data, X.iloc[:300], seed=2, n_boot=20)
    assert list(table.columns) == list(reference.columns)
    np.testing.assert_allclose(table.to_numpy(), reference.to_numpy(), atol=1e-9)
    for r in data.regimens:  # a 95% interval per regimen, around its estimate
        s = rct.slug(r)
        assert (table[f"predicted_benefit_{s}_low"] <= table[f"predicted_benefit_{s}"]).all()
        assert (table[f"predicted_benefit_{s}"] <= table[f"predicted_benefit_{s}_high"]).all()
    broken = {**doc, "regimens": [{"name": "x"}, {"name": "y"}]}
    with pytest.raises(ConfigError, match="not a benefit model"):
        bm.check_exported(broken, "test")


def test_regimens_whose_column_names_clash_are_refused(three_arms):
    data, _ = three_arms
    arm = np.where(data.arm == "MSC 5.0e7 x1", "MSC 2.0e8-x3", data.arm)  # the other's slug
    clash = bm.BenefitData(data.patient_id, data.X, data.treated, data.y, data.mx1, arm)
    with pytest.raises(ConfigError, match="same column name 'predicted_benefit_msc_2_0e8_x3'"):
        bm.predict_benefit_by_regimen(clash, data.X.iloc[:5], n_boot=0)


def test_a_patient_without_an_arm_is_refused_not_counted_as_treated():
    study = simulate("rct", 60, 3, rct_design=rct.RctDesign(mx1_role="neither"))
    fs = build_features(load_config({"name": "b"}), study)
    patients = study.patients.copy()
    patients.loc[patients.index[4], "arm"] = None
    with pytest.raises(ConfigError, match="'arm' is empty for 1 patient"):
        bm.benefit_data(fs, patients, "arm", rct.CONTROL_ARM.name)


def test_ate_by_regimen_holds_the_true_ate_of_each_regimen(three_arms):
    data, truth = three_arms
    found = ate_by_regimen(regimen_effects(data))
    assert list(found) == data.regimens
    for r, a in found.items():
        true_ate = truth.loc[data.arm == r, f"true_benefit__{rct.slug(r)}"].mean()
        lo, hi = a["ate_ci"]
        assert lo < a["ate"] < hi and lo < true_ate < hi, r
        assert a["n_control"] == int((data.treated == 0).sum())


def test_the_training_summary_gives_each_regimens_ate_beside_the_pooled_validation():
    design = rct.RctDesign(regimens=tuple(rct.parse_regimen(r) for r in REGIMENS), ratio=(1, 1, 1))
    study = simulate("rct", 300, 9, rct_design=design)
    config = config_from_dict({"name": "b", "benefit": {"bootstrap": 0}})
    flat, _ = benefit_summary(config, build_features(config, study), study.patients)
    assert list(flat["ate_by_regimen"]) == ["MSC 2.0e8 x3", "MSC 5.0e7 x1"]
    pooled = flat["ate"]  # any MSC vs standard care: between the two regimens' ATEs
    ates = [a["ate"] for a in flat["ate_by_regimen"].values()]
    assert min(ates) < pooled < max(ates)
    json.dumps(flat, allow_nan=False)  # JSON-safe, as the summary file needs


def test_one_reader_of_simulation_json_names_file_and_key(tmp_path):
    assert study_randomised(tmp_path) is None and is_simulated(tmp_path) is False  # no file
    meta = tmp_path / "simulation.json"
    meta.write_text(json.dumps({"simulated": True}))
    assert study_randomised(tmp_path) is None and is_simulated(tmp_path) is True  # single-arm
    meta.write_text(json.dumps({"simulated": True, "randomised": "yes"}))
    with pytest.raises(DataError) as err:
        study_randomised(tmp_path)
    (problem,) = err.value.problems
    assert (problem.file, problem.column) == ("simulation.json", "randomised")
    assert "'yes'" in problem.message
    meta.write_text(json.dumps({"randomised": True}))
    with pytest.raises(DataError) as err:  # the simulated mark is required
        is_simulated(tmp_path)
    assert err.value.problems[0].column == "simulated"
    meta.write_text("{broken")
    for read in (study_randomised, is_simulated):
        with pytest.raises(DataError, match="cannot be read"):
            read(tmp_path)
