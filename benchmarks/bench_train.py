"""Training time: `make train` (both shipped experiments) on the SIMULATED trial cohort
(target: under 2 minutes) and one experiment on 100,000 simulated patients (under 10 minutes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from msc_response.simulator import write_simulation as simulate

from ._common import CLI, private_store, run_measured, write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    work = private_store("bench_train_")
    cli = CLI
    try:
        simulate(work / "trial", design="trial", seed=20250238, h5ad_patients=0)
        trial = {}
        for cfg in sorted((ROOT / "experiments").glob("*.yaml")):
            trial[cfg.stem] = run_measured(
                [*cli, "train", "--config", str(cfg), "--data", str(work / "trial")]
            )
        total = round(sum(v["wall_s"] for v in trial.values()), 1)
        simulate(
            work / "big", design="trial", n_patients=100_000, seed=5, fmt="parquet", h5ad_patients=0
        )
        big = run_measured([*cli, "train", "--config", str(ROOT / "experiments/child_pugh_day28.yaml"),
                            "--data", str(work / "big")])  # fmt: skip
        write_result("train", {
            "trial_42": {"per_experiment": trial, "total_s": total, "target_s": 120, "meets_target": total < 120},
            "simulated_100k": {**big, "target_s": 600, "meets_target": big["wall_s"] < 600},
        })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
