"""Proof that the validation tells the truth, on SIMULATED cohorts with known truth.

1. A 2,000-patient screening cohort: the chosen model's AUROC on a fresh 20,000-patient
   simulated cohort is at least 0.95 x the oracle AUROC (true probabilities on that
   cohort's realised labels).
2. Ten simulated trials of the published size (42): the validated (out-of-fold) AUROC
   against the AUROC the same refit model reaches on a fresh 20,000-patient cohort.
   Targets: mean signed difference within +/- 0.05, mean absolute difference <= 0.10;
   the apparent AUROC is shown to overstate it.

Selection and refit use the training module's own functions (no MLflow needed here).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import write_result
from msc_response.config import config_from_dict
from msc_response.features import build_features
from msc_response.modeling import validation
from msc_response.modeling.models import model_specs
from msc_response.modeling.train import refit, select, validate_model
from msc_response.simulator import write_simulation as simulate

ENDPOINT = {"score": "child_pugh"}


def fit_chosen(data: Path, repeats: int, n_boot: int, seed: int):
    config = config_from_dict({"name": "bench", "endpoint": ENDPOINT,
                               "model": {"repeats": repeats, "bootstrap": n_boot, "seed": seed}})  # fmt: skip
    fs = build_features(config, data)
    X = fs.table[fs.feature_columns].astype(float)
    y = fs.table["response"].to_numpy(dtype=int)
    n_min = int(min(y.sum(), len(y) - y.sum()))
    results = {s.name: validate_model(s, config, X, y, n_min, repeats, n_boot, 200, seed)
               for s in model_specs(config, fs.feature_columns)}  # fmt: skip
    chosen, baseline = select(results)
    return config, chosen, baseline, refit(chosen.spec, config, X, y, n_min, seed)


def fresh_auc(config, fitted, data: Path) -> tuple[float, float]:
    """AUROC of ``fitted`` and of the oracle on a fresh cohort."""
    fs = build_features(config, data)
    y = fs.table["response"].to_numpy(dtype=int)
    p = fitted.predict_proba(fs.table)
    truth = pd.read_csv(data / "truth.csv").set_index("patient_id").loc[fs.table["patient_id"]]
    return validation.roc_auc(y, p), validation.roc_auc(y, truth["p_child_pugh"].to_numpy())


def main(n_trials: int = 10) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_honest_"))
    t0 = time.perf_counter()
    try:
        simulate(work / "screen", design="screening", n_patients=2000, seed=101, h5ad_patients=0)
        simulate(
            work / "fresh_screen",
            design="screening",
            n_patients=20000,
            seed=202,
            fmt="parquet",
            h5ad_patients=0,
        )
        config, chosen, baseline, fitted = fit_chosen(work / "screen", repeats=2, n_boot=20, seed=1)
        model_auc, oracle_auc = fresh_auc(config, fitted, work / "fresh_screen")
        part1 = {"chosen_model": chosen.spec.name, "validated_roc_auc": round(chosen.validated_roc_auc, 4),
                 "fresh_roc_auc": round(model_auc, 4), "oracle_roc_auc": round(oracle_auc, 4),
                 "ratio_to_oracle": round(model_auc / oracle_auc, 4), "target_ratio": 0.95,
                 "meets_target": model_auc >= 0.95 * oracle_auc}  # fmt: skip

        simulate(
            work / "fresh_trial",
            design="trial",
            n_patients=20000,
            seed=303,
            fmt="parquet",
            h5ad_patients=0,
        )
        rows = []
        for k in range(n_trials):
            d = work / f"trial_{k}"
            simulate(d, design="trial", seed=1000 + k, h5ad_patients=0)
            config, chosen, _, fitted = fit_chosen(d, repeats=10, n_boot=50, seed=k)
            auc_fresh, _ = fresh_auc(config, fitted, work / "fresh_trial")
            rows.append({"seed": 1000 + k, "chosen": chosen.spec.name, "validated": chosen.validated_roc_auc,
                         "optimism_corrected": chosen.optimism.corrected["roc_auc"],
                         "apparent": chosen.optimism.apparent["roc_auc"], "fresh": auc_fresh})  # fmt: skip
            print(rows[-1], file=sys.stderr)
        df = pd.DataFrame(rows)
        signed = (df["validated"] - df["fresh"]).mean()
        absolute = (df["validated"] - df["fresh"]).abs().mean()
        part2 = {
            "trials": df.round(4).to_dict(orient="records"),
            "mean_signed_difference": round(float(signed), 4),
            "mean_absolute_difference": round(float(absolute), 4),
            "mean_apparent_minus_fresh": round(float((df["apparent"] - df["fresh"]).mean()), 4),
            "mean_optimism_corrected_minus_fresh": round(
                float((df["optimism_corrected"] - df["fresh"]).mean()), 4
            ),
            "targets": {"mean_signed_within": 0.05, "mean_absolute_at_most": 0.10},
            "meets_target": bool(abs(signed) <= 0.05 and absolute <= 0.10),
            "apparent_overstates": bool((df["apparent"] - df["fresh"]).mean() > 0.05),
        }
        write_result("honest_validation", {"screening_2000": part1, "trials_of_published_size": part2,
                                           "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
