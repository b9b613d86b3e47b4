"""The simulator: contract, determinism, honest truth, calibration, safe output directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from msc_response import scores, units
from msc_response import simulator as sim
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError
from msc_response.features import build_features, features_from_study
from msc_response.study import load_study, study_from_frames

runner = CliRunner()

#: The endpoints of ``truth.csv`` as experiment configs.
ENDPOINTS = {
    "child_pugh": {"score": "child_pugh"},
    "meld": {"score": "meld"},
    "albumin": {"score": "albumin", "direction": "increase", "min_change": 0.1},
}


def canonical_wide(labs: pd.DataFrame) -> pd.DataFrame:
    """Labs in canonical units, one row per (patient, day)."""
    labs = labs.assign(
        patient_id=labs["patient_id"].astype(str),
        value=labs["value"] * units.factors_for(labs["test"], labs["unit"]),
    )
    return labs.pivot_table(
        index=["patient_id", "day"], columns="test", values="value", observed=True
    )


def test_trial_design_layout(trial_dir):
    patients = pd.read_csv(trial_dir / "patients.csv")
    sizes = patients["arm"].value_counts().to_dict()
    assert sizes == {
        "Ia 0.5e8 x1": 6,
        "Ia 1.0e8 x1": 6,
        "Ia 1.5e8 x1": 6,
        "Ia 2.0e8 x1": 6,
        "Ib 1.0e8 x3": 3,
        "Ib 2.0e8 x3": 6,
    }
    labs = pd.read_csv(trial_dir / "labs.csv")
    assert sorted(labs["day"].unique()) == list(sim.VISITS)
    assert {"umol/L", "g/L"} <= set(labs["unit"])  # some patients in SI units
    meta = json.loads((trial_dir / "simulation.json").read_text())
    assert meta["simulated"] is True and "SIMULATED" in meta["note"]
    assert 0.5 < meta["oracle_roc_auc"]["child_pugh"] <= 1
    assert meta["trial_layout"]["phase_ib_split"] == {"Ib 1.0e8 x3": 3, "Ib 2.0e8 x3": 6}
    assert "8/9" in meta["trial_layout"]["phase_ib_split_reason"]
    assert set(meta["parameters"]["latent_traits"]) == {
        "severity",
        "inflammation",
        "responsiveness",
    }
    assert "SIMULATED" in (trial_dir / "README.txt").read_text()
    truth = pd.read_csv(trial_dir / "truth.csv")
    for ep in sim.ENDPOINTS:
        assert {f"p_{ep}", f"y_{ep}", f"drawn_{ep}"} <= set(truth.columns)
    assert len(load_study(trial_dir).patients) == 33  # follows the data contract


def test_eligibility_is_checked_on_the_values_as_written(tmp_path):
    """Child-Pugh 7-12 as the reader computes it (rounded, SI units converted back)."""
    sim.write_simulation(
        tmp_path / "s", design="screening", n_patients=4000, seed=3, h5ad_patients=0
    )
    fs = build_features(config_from_dict({"name": "t"}), tmp_path / "s")
    assert fs.flow["included"] == 4000
    assert fs.table["baseline_child_pugh"].between(7, 12).all()


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    sim.write_simulation(a, seed=5, h5ad_patients=0)
    sim.write_simulation(b, seed=5, h5ad_patients=0)
    sim.write_simulation(c, seed=6, h5ad_patients=0)
    for name in ("patients.csv", "labs.csv", "cells.csv", "truth.csv", "simulation.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "labs.csv").read_bytes() != (c / "labs.csv").read_bytes()


def test_parquet_same_bytes(tmp_path):
    for d in ("a", "b"):
        sim.write_simulation(tmp_path / d, design="screening", n_patients=300, seed=2,
                             fmt="parquet", h5ad_patients=0)  # fmt: skip
    for name in ("patients", "labs", "cells"):
        a, b = (tmp_path / d / f"{name}.parquet" for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name
    assert len(load_study(tmp_path / "a").patients) == 300


def test_in_memory_tables_are_what_is_written(tmp_path):
    tables = sim.simulate_tables("screening", 500, seed=4)
    meta = sim.write_simulation(
        tmp_path / "s", design="screening", n_patients=500, seed=4, h5ad_patients=0
    )
    assert tables.metadata == {k: v for k, v in meta.items() if k != "format"}
    pd.testing.assert_frame_equal(tables.truth, pd.read_csv(tmp_path / "s/truth.csv"))
    config = config_from_dict({"name": "t", "landmark_day": 7})
    files = {t: Path(f"{t}.csv") for t in ("patients", "labs", "cells")}
    study = study_from_frames(tables.patients, tables.labs, tables.cells, files)
    in_memory = features_from_study(study, config)
    written = build_features(config, tmp_path / "s")
    pd.testing.assert_frame_equal(in_memory.table, written.table)


def test_arm_sizes_scale_in_proportion():
    arms = sim.scaled_arms(sim.TRIAL_ARMS, 66)
    assert [a.size for a in arms] == [12, 12, 12, 12, 6, 12]
    assert sum(a.size for a in sim.scaled_arms(sim.TRIAL_ARMS, 50)) == 50


def test_baseline_only_has_no_follow_up(tmp_path):
    meta = sim.write_simulation(tmp_path / "s", design="screening", n_patients=50, seed=1,
                                baseline_only=True, h5ad_patients=0)  # fmt: skip
    labs = pd.read_csv(tmp_path / "s/labs.csv")
    assert set(labs["day"]) == {-7, 0}
    assert "oracle_roc_auc" not in meta
    truth = pd.read_csv(tmp_path / "s/truth.csv")
    assert "y_child_pugh" not in truth.columns and "p_child_pugh" in truth.columns


def test_failed_run_leaves_the_previous_output_and_nothing_beside(tmp_path, monkeypatch):
    out = tmp_path / "s"
    sim.write_simulation(out, seed=1, h5ad_patients=0)
    before = (out / "labs.csv").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(sim.cohort, "metadata", boom)
    with pytest.raises(RuntimeError):
        sim.write_simulation(out, seed=2, h5ad_patients=0)
    assert (out / "labs.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


# ----------------------------------------------------------------------------------------
# the output directory: nothing of the user's is lost


def test_out_that_is_a_file_exits_2_and_leaves_it_untouched(tmp_path):
    target = tmp_path / "study"
    target.write_text("mine\n")
    result = runner.invoke(app, ["simulate", "--out", str(target)])
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and "existing file" in result.output
    assert target.read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["study"]  # nothing hidden beside it


def test_out_that_is_a_symlink_exits_2_and_leaves_both_untouched(tmp_path):
    real = tmp_path / "real"
    sim.write_simulation(real, seed=1, h5ad_patients=0)
    before = (real / "labs.csv").read_bytes()
    (tmp_path / "link").symlink_to(real)
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "link")])
    assert result.exit_code == 2 and "symbolic link" in result.output, result.output
    assert (tmp_path / "link").is_symlink() and (real / "labs.csv").read_bytes() == before


def test_foreign_directory_is_refused_and_force_keeps_every_foreign_file(tmp_path):
    out = tmp_path / "study"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    (out / "sub" / "x.csv").write_text("a\n1\n")
    result = runner.invoke(app, ["simulate", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "not a previous simulator output" in result.output and "'notes.txt'" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sub"]

    result = runner.invoke(app, ["simulate", "--out", str(out), "--force", "--h5ad-patients", "0"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine\n" and (
        out / "sub/x.csv"
    ).read_text() == "a\n1\n"
    assert json.loads((out / "simulation.json").read_text())["simulated"] is True
    # again in Parquet: the simulator's own CSV tables go (no ambiguous study), the rest stays
    result = runner.invoke(app, ["simulate", "--out", str(out), "--force", "--format", "parquet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["notes.txt", "sub", "patients.parquet", "labs.parquet", "cells.parquet", "cells.h5ad",
         "truth.csv", "simulation.json", "README.txt"]
    )  # fmt: skip
    assert len(load_study(out).patients) == 33
    assert [p.name for p in tmp_path.iterdir()] == ["study"]


def test_force_never_replaces_a_table_the_simulator_did_not_write(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "patients.csv").write_text("patient_id,sex,age_years\nP1,F,50\n")
    before = (out / "patients.csv").read_bytes()
    result = runner.invoke(app, ["simulate", "--out", str(out), "--force"])
    assert result.exit_code == 2, result.output
    assert "'patients.csv'" in result.output and "never replaced" in result.output
    assert [p.name for p in out.iterdir()] == ["patients.csv"]
    assert (out / "patients.csv").read_bytes() == before


def test_a_previous_output_is_replaced_but_not_once_the_user_added_to_it(tmp_path):
    out = tmp_path / "study"
    sim.write_simulation(out, seed=1, h5ad_patients=0)
    sim.write_simulation(out, seed=2, h5ad_patients=0, fmt="parquet")  # a whole previous output
    assert not (out / "labs.csv").exists() and (out / "labs.parquet").exists()
    (out / "analysis.ipynb").write_text("{}")
    with pytest.raises(ConfigError, match="^out: .*'analysis.ipynb'"):
        sim.write_simulation(out, seed=3, h5ad_patients=0)
    assert (out / "analysis.ipynb").exists() and (out / "labs.parquet").exists()
    # a simulation.json that cannot be read does not make a directory the simulator's
    (out / "analysis.ipynb").unlink()
    (out / "simulation.json").write_text("{broken")
    with pytest.raises(ConfigError, match="not a previous simulator output"):
        sim.write_simulation(out, seed=3, h5ad_patients=0)


def test_a_killed_run_leaves_a_temporary_directory_that_the_next_run_removes(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "msc_response.cli", "simulate", "--design", "screening",
           "--n-patients", "500000", "--format", "parquet", "--h5ad-patients", "0", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    leftovers: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        leftovers = [
            p for p in tmp_path.glob(".study.msc-tmp-*") if (p / "new" / "labs.parquet").exists()
        ]
        if leftovers:
            break
        time.sleep(0.05)
    assert leftovers, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not out.exists() and leftovers[0].exists()
    live = tmp_path / f".study.simulate-{os.getpid()}-running"  # a run still going: kept
    live.mkdir()
    sim.write_simulation(out, seed=1, h5ad_patients=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "study"])


def test_bad_parameters_name_the_option_and_exit_2(tmp_path):
    out = str(tmp_path / "s")
    for args, message in (
        (
            ["--design", "cohort"],
            "'cohort' is not one of 'trial', 'screening', 'rct'",
        ),  # Click's choice
        (["--design", "screening"], "--n-patients: required"),
        (["--n-patients", "0"], "--n-patients: expected a whole number >= 1, got 0"),
        (["--seed", "-1"], "--seed: expected a whole number >= 0, got -1"),
        (["--format", "xlsx"], "'xlsx' is not one of 'csv', 'parquet'"),
    ):
        result = runner.invoke(app, ["simulate", "--out", out, *args])
        shown = " ".join(result.output.replace("│", " ").split())  # Click's error box wraps lines
        assert result.exit_code == 2 and message in shown, (args, result.output)
    assert not (tmp_path / "s").exists()
    for kwargs, param in (({"design": "x"}, "design"), ({"n_patients": 2.5}, "n_patients"),
                          ({"seed": None}, "seed")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"^{param}: "):
            sim.generate_chunks(**kwargs)  # raised at the call, before any chunk
    with pytest.raises(ConfigError, match="^fmt: "):
        sim.write_simulation(out, fmt="json")


def test_a_bug_in_the_simulator_is_a_traceback_not_exit_2(tmp_path, monkeypatch):
    def bug(*a, **k):
        raise ValueError("a bug")

    monkeypatch.setattr(sim, "write_simulation", bug)
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


# ----------------------------------------------------------------------------------------
# the generative model


def test_mx1_fraction_dips_around_day_7_and_recovers():
    tables = sim.simulate_tables("trial", 660, seed=1)
    cells = tables.cells.assign(patient_id=tables.cells["patient_id"].astype(str))
    c = cells.pivot(index="patient_id", columns="day", values="fraction")
    single = tables.patients.set_index("patient_id")["n_infusions"].reindex(c.index) == 1
    c = c[single]
    assert (c[7] < c[0]).mean() > 0.9
    assert (c[28] - c[0]).abs().mean() < (c[7] - c[0]).abs().mean() / 3


def test_mx1_change_is_not_built_from_the_label():
    """The day-7/day-0 MX1+ ratio predicts response only through shared traits: below the oracle."""
    tables = sim.simulate_tables("screening", 20_000, seed=2)
    c = tables.cells.assign(patient_id=tables.cells["patient_id"].astype(str))
    c = c.pivot(index="patient_id", columns="day", values="fraction").loc[
        tables.truth["patient_id"]
    ]
    ratio = (c[7] / c[0]).to_numpy()
    for ep in sim.ENDPOINTS:
        y = tables.truth[f"y_{ep}"]
        oracle = roc_auc_score(y, tables.truth[f"p_{ep}"])
        assert 1 - roc_auc_score(y, ratio) < oracle - 0.05, ep  # a smaller ratio: a response


def test_stored_probability_is_that_of_the_realised_label():
    """Calibrated on the realised labels (deciles within 4 Monte Carlo SE); draws realised."""
    truth = sim.simulate_tables("screening", 20_000, seed=3).truth
    for ep in sim.ENDPOINTS:
        y, p = truth[f"y_{ep}"], truth[f"p_{ep}"]
        g = pd.DataFrame({"y": y, "p": p, "bin": pd.qcut(p, 10, labels=False, duplicates="drop")})
        g = g.groupby("bin").agg(y=("y", "mean"), p=("p", "mean"), n=("y", "size"))
        z = (g["y"] - g["p"]) / np.sqrt(g["p"] * (1 - g["p"]) / g["n"])
        assert z.abs().max() < 4, (ep, g)
        assert (y != truth[f"drawn_{ep}"]).mean() < 0.01
    assert (truth["y_albumin"] == truth["drawn_albumin"]).all()


def test_labs_follow_the_cumulative_immune_effect():
    """Single doses change mostly by day 14; weekly x3 keeps improving to day 28."""
    tables = sim.simulate_tables("trial", 3300, seed=4)
    b = canonical_wide(tables.labs)["bilirubin"].unstack()
    single = tables.patients.set_index("patient_id")["n_infusions"].reindex(b.index) == 1
    change = b[28] - b[0]
    moved = change.abs() > 0.3 * b[0]
    reached = {d: ((b[d] - b[0]) / change)[moved] for d in (7, 14, 21)}
    assert reached[7][single].median() == pytest.approx(0.5, abs=0.1)
    assert reached[14][single].median() > 0.9
    assert reached[14][~single].median() < 0.6 and reached[21][~single].median() < 0.9


@pytest.mark.slow
def test_calibration_targets_on_100k_patients():
    """Rates from labels computed on the simulated labs, within 5 points of the targets."""
    chunks = list(sim.generate_chunks("trial", 100_000, seed=11))
    truth = pd.concat([c.truth for c in chunks], ignore_index=True)
    rates = sim.calibration_rates(truth)
    for key, target in sim.CALIBRATION_TARGETS.items():
        assert rates[key]["rate"] == pytest.approx(target, abs=0.05), key
    # more drug, more response: the single-dose arms are ordered by dose
    single = truth["arm"].str.startswith("Ia")
    assert truth[single].groupby("arm")["y_child_pugh"].mean().is_monotonic_increasing
    # MELD rose in none of the trial's repeated high-dose group: here in < 5%
    ids = truth.loc[~single, "patient_id"]
    labs = pd.concat([c.labs for c in chunks], ignore_index=True)
    labs = labs[labs["patient_id"].isin(ids) & labs["day"].isin([0, 28])]
    w = canonical_wide(labs)
    m = pd.Series(scores.meld(w["bilirubin"], w["inr"], w["creatinine"], w["dialysis"]),
                  index=w.index).unstack()  # fmt: skip
    assert len(m) == len(ids) and (m[28] > m[0]).mean() < 0.05


@pytest.mark.slow
def test_no_feature_and_no_model_beats_the_oracle(tmp_path):
    """Issue 10: trained on 2,000 simulated patients (landmark day 7), judged on 20,000 fresh."""
    from msc_response.modeling.models import ModelSpec, make_estimator

    sim.write_simulation(
        tmp_path / "train", design="screening", n_patients=2000, seed=31, h5ad_patients=0
    )
    sim.write_simulation(tmp_path / "fresh", design="screening", n_patients=20_000, seed=32,
                         fmt="parquet", h5ad_patients=0)  # fmt: skip
    truth = pd.read_csv(tmp_path / "fresh/truth.csv").set_index("patient_id")
    report = {}
    for ep, endpoint in ENDPOINTS.items():
        config = config_from_dict({"name": "accept", "landmark_day": 7, "endpoint": endpoint})
        train = build_features(config, tmp_path / "train")
        fresh = build_features(config, tmp_path / "fresh")
        assert fresh.flow["n_excluded"] == 0
        cols = train.feature_columns
        assert {"landmark_mx1_monocytes_fraction", "change_mx1_monocytes_fraction"} <= set(cols)
        y = fresh.table["response"].to_numpy(dtype=int)
        t = truth.loc[fresh.table["patient_id"]]
        assert (y == t[f"y_{ep}"].to_numpy()).all()
        oracle = roc_auc_score(y, t[f"p_{ep}"])
        X = fresh.table[cols].astype(float)
        features = {c: roc_auc_score(y, X[c]) for c in cols if X[c].nunique() > 1}
        features["mx1_ratio_day7_day0"] = roc_auc_score(
            y, X["landmark_mx1_monocytes_fraction"] / X["baseline_mx1_monocytes_fraction"]
        )
        features = {c: max(a, 1 - a) for c, a in features.items()}
        y_train = train.table["response"].to_numpy(dtype=int)
        n_min = int(min(y_train.sum(), len(y_train) - y_train.sum()))
        models = {}
        for name, kind in (("lightgbm", "lightgbm"), ("logistic_l2", "logistic")):
            est = make_estimator(ModelSpec(name, kind, "candidate", tuple(cols)), config, 1, n_min)
            est.fit(train.table[cols].astype(float), y_train)
            models[name] = roc_auc_score(y, est.predict_proba(X)[:, 1])
        best = max(features, key=features.get)
        report[ep] = {"oracle": round(oracle, 4), "best_feature": (best, round(features[best], 4)),
                      "mx1_ratio": round(features["mx1_ratio_day7_day0"], 4),
                      "models": {k: round(v, 4) for k, v in models.items()}}  # fmt: skip
        assert features[best] <= oracle + 0.01, report[ep]
        assert max(models.values()) <= oracle + 0.01, report[ep]
    print(json.dumps(report, indent=1))
