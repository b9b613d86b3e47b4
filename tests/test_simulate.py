"""The simulator: contract, determinism, truth and calibration to the trial's reported rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from msc_response import simulate as sim
from msc_response.cli import app
from msc_response.study import load_study

runner = CliRunner()


def test_trial_design_layout(trial_dir):
    patients = pd.read_csv(trial_dir / "patients.csv")
    sizes = patients["arm"].value_counts().to_dict()
    assert sizes == {
        "Ia 0.5e8 x1": 6,
        "Ia 1.0e8 x1": 6,
        "Ia 1.5e8 x1": 6,
        "Ia 2.0e8 x1": 6,
        "Ib 1.0e8 x3": 9,
        "Ib 2.0e8 x3": 9,
    }
    labs = pd.read_csv(trial_dir / "labs.csv")
    assert sorted(labs["day"].unique()) == list(sim.VISITS)
    assert {"umol/L", "g/L"} <= set(labs["unit"])  # some patients in SI units
    meta = json.loads((trial_dir / "simulation.json").read_text())
    assert meta["simulated"] is True and "SIMULATED" in meta["note"]
    assert 0.5 < meta["oracle_roc_auc"]["child_pugh"] <= 1
    assert "SIMULATED" in (trial_dir / "README.txt").read_text()
    truth = pd.read_csv(trial_dir / "truth.csv")
    assert {"p_child_pugh", "y_child_pugh", "p_meld", "y_meld", "p_albumin", "y_albumin"} <= set(
        truth.columns
    )
    study = load_study(trial_dir)  # follows the data contract
    assert len(study.patients) == 42


def test_baseline_child_pugh_is_eligible(trial_dir):
    from msc_response.config import config_from_dict
    from msc_response.features import build_features

    fs = build_features(config_from_dict({"name": "t"}), trial_dir)
    assert fs.table["baseline_child_pugh"].between(7, 12).all()


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    sim.simulate(a, seed=5, h5ad_patients=0)
    sim.simulate(b, seed=5, h5ad_patients=0)
    sim.simulate(c, seed=6, h5ad_patients=0)
    for name in ("patients.csv", "labs.csv", "cells.csv", "truth.csv", "simulation.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "labs.csv").read_bytes() != (c / "labs.csv").read_bytes()


def test_parquet_same_bytes(tmp_path):
    for d in ("a", "b"):
        sim.simulate(
            tmp_path / d, design="screening", n_patients=300, seed=2, fmt="parquet", h5ad_patients=0
        )
    assert (tmp_path / "a/labs.parquet").read_bytes() == (tmp_path / "b/labs.parquet").read_bytes()
    assert len(load_study(tmp_path / "a").patients) == 300


def test_arm_sizes_scale_in_proportion():
    arms = sim.scaled_arms(sim.TRIAL_ARMS, 84)
    assert [a.size for a in arms] == [12, 12, 12, 12, 18, 18]
    assert sum(a.size for a in sim.scaled_arms(sim.TRIAL_ARMS, 50)) == 50


def test_baseline_only_has_no_follow_up(tmp_path):
    meta = sim.simulate(
        tmp_path / "s",
        design="screening",
        n_patients=50,
        seed=1,
        baseline_only=True,
        h5ad_patients=0,
    )
    labs = pd.read_csv(tmp_path / "s/labs.csv")
    assert set(labs["day"]) == {-7, 0}
    assert "oracle_roc_auc" not in meta
    assert "y_child_pugh" not in pd.read_csv(tmp_path / "s/truth.csv").columns


def test_failed_run_leaves_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "s"
    sim.simulate(out, seed=1, h5ad_patients=0)
    before = (out / "labs.csv").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(sim, "_metadata", boom)
    with pytest.raises(RuntimeError):
        sim.simulate(out, seed=2, h5ad_patients=0)
    assert (out / "labs.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_bad_arguments_exit_2(tmp_path):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "s"), "--design", "cohort"])
    assert result.exit_code == 2 and "design: expected 'trial' or 'screening'" in result.output
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "s"), "--design", "screening"])
    assert result.exit_code == 2 and "n_patients" in result.output


def test_mx1_fraction_dips_around_day_7_and_recovers(trial_dir):
    cells = pd.read_csv(trial_dir / "cells.csv").pivot(
        index="patient_id", columns="day", values="fraction"
    )
    single = pd.read_csv(trial_dir / "patients.csv").set_index("patient_id")["n_infusions"] == 1
    c = cells[single.reindex(cells.index)]
    assert (c[7] < c[0]).mean() > 0.9
    assert (c[28] - c[0]).abs().mean() < (c[7] - c[0]).abs().mean() / 3


@pytest.mark.slow
def test_calibration_targets_on_100k_patients():
    """Rates from labels computed on the simulated labs, within 5 points of the targets."""
    n = 100_000
    arms = [a for a in sim.scaled_arms(sim.TRIAL_ARMS, n) for _ in range(a.size)]
    rng = np.random.default_rng(11)
    truth = pd.concat(
        [
            sim.simulate_chunk(rng, arms[i : i + sim.CHUNK], i + 1)["truth"]
            for i in range(0, n, sim.CHUNK)
        ]
    )
    single = truth["arm"].str.startswith("Ia")
    high = truth["arm"] == "Ib 2.0e8 x3"
    assert truth.loc[single, "y_child_pugh"].mean() == pytest.approx(0.533, abs=0.05)
    assert truth.loc[high, "y_child_pugh"].mean() == pytest.approx(0.889, abs=0.05)
    assert truth.loc[high, "y_meld"].mean() == pytest.approx(0.444, abs=0.05)
    assert truth.loc[high, "y_albumin"].mean() == pytest.approx(0.889, abs=0.05)
    # more drug, more response: the single-dose arms are ordered by dose
    rates = truth[single].groupby("arm")["y_child_pugh"].mean()
    assert rates.is_monotonic_increasing


@pytest.mark.slow
def test_meld_almost_never_worse_in_the_high_dose_arm():
    rng = np.random.default_rng(3)
    arms = [sim.TRIAL_ARMS[-1]] * 5000
    chunk = sim.simulate_chunk(rng, arms, 1)
    labs = chunk["labs"]
    from msc_response.units import convert

    labs = labs[
        labs["test"].isin(["bilirubin", "inr", "creatinine", "dialysis"])
        & labs["day"].isin([0, 28])
    ].copy()
    labs["value"] = [
        convert(v, t, u)
        for v, t, u in zip(
            labs["value"], labs["test"].astype(str), labs["unit"].astype(str), strict=True
        )
    ]
    wide = labs.pivot_table(
        index=["patient_id", "day"], columns="test", values="value", observed=True
    )
    from msc_response.scores import meld

    m = pd.Series(
        meld(wide["bilirubin"], wide["inr"], wide["creatinine"], wide["dialysis"]), index=wide.index
    ).unstack()
    assert (m[28] > m[0]).mean() < 0.05
