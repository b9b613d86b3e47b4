"""The randomised design: potential outcomes, scenarios that behave as named, randomisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from typer.testing import CliRunner

from msc_response.cli import app
from msc_response.config import load_config
from msc_response.errors import ConfigError
from msc_response.features import build_features
from msc_response.simulator import cohort, rct
from msc_response.study import load_study

runner = CliRunner()


@pytest.fixture(scope="module")
def scenarios() -> dict[str, pd.DataFrame]:
    """20,000 patients per MX1+ scenario (the truth tables)."""
    return {
        role: cohort.simulate_tables(
            "rct", 20_000, 7, rct_design=rct.RctDesign(mx1_role=role)
        ).truth
        for role in rct.MX1_ROLES
    }


def _slopes(truth: pd.DataFrame, column: str, transform=lambda x: x) -> float:
    """Least-squares coefficient of inflammation z on ``column``, adjusted for severity."""
    x = np.column_stack([np.ones(len(truth)), truth["inflammation_z"], truth["severity"]])
    y = transform(truth[column].clip(1e-4, 1 - 1e-4) if transform is logit else truth[column])
    return float(np.linalg.lstsq(x, y, rcond=None)[0][1])


def test_simulated_ate_is_the_mean_true_benefit_within_monte_carlo_error(tmp_path):
    out = tmp_path / "rct"
    result = runner.invoke(
        app, ["simulate", "--design", "rct", "--n-patients", "2000", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(out / "truth.csv", dtype={"patient_id": str})
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["randomised"] is True and meta["control_value"] == "standard care"
    treated = truth["arm"] != "standard care"
    y = truth["y_child_pugh"]
    observed = y[treated].mean() - y[~treated].mean()
    se = np.sqrt(y[treated].var() / treated.sum() + y[~treated].var() / (~treated).sum())
    assert abs(observed - truth["true_benefit"].mean()) < 3 * se
    # each patient's own-arm probability is the potential outcome of that arm
    own = np.where(treated, truth["p_response_treated"], truth["p_response_control"])
    np.testing.assert_allclose(truth["p_child_pugh"], own, atol=1e-6)
    np.testing.assert_allclose(
        truth["true_benefit"], truth["p_response_treated"] - truth["p_response_control"], atol=2e-6
    )
    assert meta["true_ate"]["true_benefit"] == pytest.approx(truth["true_benefit"].mean(), abs=1e-4)


@pytest.mark.parametrize("role", rct.MX1_ROLES)
def test_each_scenario_behaves_as_named(scenarios, role):
    truth = scenarios[role]
    benefit_slope = _slopes(truth, "true_benefit")
    control_slope = _slopes(truth, "p_response_control", logit)
    if role in ("predictive", "both"):
        assert benefit_slope > 0.05  # MX1+ modifies the effect of MSC
    else:
        assert abs(benefit_slope) < 0.01  # the true benefit does not vary with MX1+
    if role in ("prognostic", "both"):
        assert control_slope > 0.3  # MX1+ predicts the outcome without cells
    else:
        assert abs(control_slope) < 0.1


def test_logit_scale_effect_is_constant_in_mx1_unless_predictive():
    z = np.linspace(-2, 2, 9)
    zeros = np.zeros_like(z)
    for role in rct.MX1_ROLES:
        d = rct.RctDesign(mx1_role=role)
        effect = (rct.arm_logits(d, rct.DEFAULT_REGIMEN, z, zeros, zeros)["child_pugh"]
                  - rct.arm_logits(d, None, z, zeros, zeros)["child_pugh"])  # fmt: skip
        slope = np.polyfit(z, effect, 1)[0]
        expected = rct.RCT_COEF["child_pugh"]["h"] if d.predictive else 0.0
        assert slope == pytest.approx(expected)


def test_control_and_treated_rates_meet_the_assumed_targets(scenarios):
    truth = scenarios["neither"]
    assert truth["p_response_control"].mean() == pytest.approx(
        rct.CONTROL_TARGETS["child_pugh"], abs=0.03
    )
    assert truth["p_response_treated"].mean() == pytest.approx(
        rct.TREATED_TARGETS["child_pugh"], abs=0.03
    )


def test_stratified_permuted_blocks_balance_each_stratum():
    rng = np.random.default_rng(1)
    cp = rng.integers(7, 13, 999)
    for ratio in ((1, 1), (1, 2)):
        design = rct.RctDesign(ratio=ratio)
        arm = rct.assign(rng, cp, design)
        block = sum(ratio) * design.block_multiple
        for lo, hi in rct.STRATA.values():
            members = arm[(cp >= lo) & (cp <= hi)]
            counts = np.bincount(members, minlength=2)
            expected = len(members) * np.asarray(ratio) / sum(ratio)
            assert np.all(np.abs(counts - expected) <= block)  # at most one open block


def test_control_arm_gets_no_cells_and_a_natural_course():
    t = cohort.simulate_tables("rct", 600, 2)
    control = t.patients["arm"] == rct.CONTROL_ARM.name
    assert t.patients.loc[control, "dose_per_infusion"].isna().all()
    assert (t.patients.loc[control, "n_infusions"] == 0).all()
    assert t.patients.loc[~control, "dose_per_infusion"].notna().all()
    cells = t.cells.assign(patient_id=t.cells["patient_id"].astype(str))
    wide = cells.pivot_table(index="patient_id", columns="day", values="fraction")
    ids = t.patients["patient_id"].astype(str)
    dip = (
        (wide[7] / wide[0])
        .groupby(ids.where(control, "treated").where(~control, "control").to_numpy())
        .mean()
    )
    assert dip["control"] == pytest.approx(1.0, abs=0.05)
    assert dip["treated"] < 0.85
    # some control patients improve without cells
    assert 0.2 < t.truth.loc[control, "y_child_pugh"].mean() < 0.5


def test_rct_study_reads_and_builds_features(tmp_path):
    result = runner.invoke(
        app, ["simulate", "--design", "rct", "--n-patients", "80", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    study = load_study(tmp_path / "r")
    assert study.problems.empty and len(study.patients) == 80
    fs = build_features(load_config({"name": "x", "data": str(tmp_path / "r")}), study)
    assert len(fs.table) == 80 and fs.flow["n_excluded"] == 0


def test_several_regimens_have_their_own_potential_outcomes():
    design = rct.RctDesign(
        regimens=(rct.parse_regimen("1.0e8x3"), rct.parse_regimen("2.0e8x3")), ratio=(1, 1, 1)
    )
    truth = cohort.simulate_tables("rct", 3000, 5, rct_design=design).truth
    low, high = "true_benefit__msc_1_0e8_x3", "true_benefit__msc_2_0e8_x3"
    assert truth[high].mean() > truth[low].mean() > 0  # more cells, more benefit
    control = truth["arm"] == "standard care"
    assert truth.loc[control, "true_benefit"].isna().all()
    assert truth.loc[~control, "true_benefit"].notna().all()


def test_a_regimen_below_the_reference_does_at_worst_nothing():
    """One infusion: the single-arm coefficients extrapolated would make the cells harm."""
    z = np.linspace(-2, 2, 9)
    zeros = np.zeros_like(z)
    for role in rct.MX1_ROLES:
        d = rct.RctDesign(mx1_role=role)
        for text in ("0.5e8x1", "2.0e8x1"):
            once = rct.arm_logits(d, rct.parse_regimen(text), z, zeros, zeros)
            control = rct.arm_logits(d, None, z, zeros, zeros)
            assert np.array_equal(once["child_pugh"], control["child_pugh"]), (role, text)
        more = rct.arm_logits(d, rct.parse_regimen("2.0e8x3"), z, zeros, zeros)
        assert more["child_pugh"][4] > control["child_pugh"][4]  # at the mean MX1+ (z = 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mx1-role", "both"], "--mx1-role: only for design 'rct'"),
        (["--design", "rct", "--mx1-role", "sometimes"], "--mx1-role: expected one of"),
        (["--design", "rct", "--ratio", "1:0"], "--ratio: expected whole numbers >= 1"),
        (["--design", "rct", "--ratio", "1:1:1"], "--ratio: expected 2 whole numbers"),
        (["--design", "rct", "--regimen", "lots"], "--regimen: expected DOSExN"),
    ],
)
def test_bad_rct_options_exit_2_naming_the_option(tmp_path, args, message):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_rct_design_rejects_bad_values():
    with pytest.raises(ConfigError, match="regimens"):
        rct.RctDesign(regimens=(rct.CONTROL_ARM,))
