"""Benefit per regimen when a trial randomised several: are the per-regimen numbers true?

Each replicate simulates a three-arm RCT (standard care, MSC 1.0e8 x3, MSC 2.0e8 x3; 1:1:1,
stratified permuted blocks) with every patient's potential outcomes known, builds the
features with the product's feature builder and does what ``train``, ``fit-benefit`` and
``score --benefit-model`` do for such a study:

* ``ate_by_regimen`` (the training summary): each regimen's ATE against the shared control
  arm, Newcombe 95% interval; bias and coverage against the population ATE of that regimen
  (mean true benefit over a fresh cohort of ``--fresh`` patients of the same scenario).
* The exported primary model per regimen (``export_by_regimen``, ``--refits`` refits) applied
  to that fresh cohort (``apply_exported``, as the scoring job does): per regimen the mean
  predicted minus the mean true benefit, the correlation of predicted with true individual
  benefit, the coverage of the true individual benefit by the per-patient 95% interval and
  its mean width; and whether the two regimens are ranked as the truth ranks them.

Every cell: the mean over replicates and its Monte Carlo standard error (MCSE). Rows are
appended to ``--rows-file`` (JSON lines) after each replicate, so a run stopped early can
be summarised; the summary goes to ``benchmarks/results/benefit_regimens.json`` and stderr.

Run: ``python -m benchmarks.bench_benefit_regimens [--replicates 100] [--n 600]
[--roles neither predictive] [--refits 50] [--fresh 4000] [--jobs 1]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from msc_response.config import load_config
from msc_response.features import build_features
from msc_response.modeling import benefit as bm
from msc_response.pipelines.benefit import ate_by_regimen
from msc_response.simulator import rct, simulate

from ._common import RESULTS

REGIMENS = ("1.0e8x3", "2.0e8x3")


def design(role: str) -> rct.RctDesign:
    arms = tuple(rct.parse_regimen(r) for r in REGIMENS)
    return rct.RctDesign(regimens=arms, ratio=(1,) * (len(arms) + 1), mx1_role=role)


def cohort(role: str, n: int, seed: int):
    """Benefit data of a SIMULATED three-arm RCT and its truth, row-aligned."""
    study = simulate("rct", n, seed, rct_design=design(role))
    fs = build_features(load_config({"name": "b"}), study)
    data = bm.benefit_data(fs, study.patients, "arm", rct.CONTROL_ARM.name)
    truth = study.truth.set_index(study.truth["patient_id"].astype(str)).loc[data.patient_id]
    return data, truth


def replicate(role: str, i: int, args, fresh) -> list[dict]:
    data, _ = cohort(role, args.n, seed=10_000 * (1 + rct.MX1_ROLES.index(role)) + i)
    fresh_data, fresh_truth = fresh
    ates = ate_by_regimen(data)
    doc = bm.export_by_regimen(data, seed=i, n_boot=args.refits)
    table = bm.apply_exported(doc, fresh_data.X)
    rows = []
    for r in data.regimens:
        s = rct.slug(r)
        true = fresh_truth[f"true_benefit__{s}"].to_numpy()
        pred = table[f"predicted_benefit_{s}"].to_numpy()
        lo, hi = table[f"predicted_benefit_{s}_low"], table[f"predicted_benefit_{s}_high"]
        a = ates[r]
        rows.append({
            "role": role, "replicate": i, "regimen": r, "true_ate": float(true.mean()),
            "ate": a["ate"], "ate_covered": bool(a["ate_ci"][0] <= true.mean() <= a["ate_ci"][1]),
            "pred_minus_true": float(pred.mean() - true.mean()),
            "corr": float(np.corrcoef(pred, true)[0, 1]),
            "patient_coverage": float(((lo <= true) & (true <= hi)).mean()),
            "patient_width": float((hi - lo).mean()),
        })  # fmt: skip
    (a, b) = rows
    ranked = np.sign(table[f"predicted_benefit_{rct.slug(b['regimen'])}"].mean()
                     - table[f"predicted_benefit_{rct.slug(a['regimen'])}"].mean())  # fmt: skip
    for row in rows:
        row["ranked_as_truth"] = bool(ranked == np.sign(b["true_ate"] - a["true_ate"]))
    return rows


def summarise(rows: pd.DataFrame) -> list[dict]:
    def mean_se(x) -> list[float]:
        x = np.asarray(x, dtype=float)
        return [round(float(x.mean()), 4), round(float(x.std(ddof=1) / np.sqrt(len(x))), 4)]

    out = []
    for (role, regimen), g in rows.groupby(["role", "regimen"], sort=True):
        out.append({"role": role, "regimen": regimen, "replicates": len(g),
                    "true_ate": round(float(g["true_ate"].mean()), 4),
                    "ate_bias": mean_se(g["ate"] - g["true_ate"]),
                    "ate_coverage": mean_se(g["ate_covered"]),
                    "pred_minus_true": mean_se(g["pred_minus_true"]),
                    "corr": mean_se(g["corr"]),
                    "patient_coverage": mean_se(g["patient_coverage"]),
                    "patient_width": mean_se(g["patient_width"]),
                    "ranked_as_truth": mean_se(g["ranked_as_truth"])})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--n", type=int, default=600, help="patients per RCT (three arms)")
    p.add_argument("--roles", nargs="+", default=["neither", "predictive"], choices=rct.MX1_ROLES)
    p.add_argument("--refits", type=int, default=50)
    p.add_argument("--fresh", type=int, default=4000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--rows-file", type=Path, default=RESULTS / "benefit_regimens_rows.jsonl")
    args = p.parse_args()
    start = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    args.rows_file.write_text("")
    for role in args.roles:
        fresh = cohort(role, args.fresh, seed=999_000 + rct.MX1_ROLES.index(role))
        for first in range(0, args.replicates, max(1, args.jobs)):
            batch = range(first, min(args.replicates, first + max(1, args.jobs)))
            found = Parallel(n_jobs=args.jobs)(
                delayed(replicate)(role, i, args, fresh) for i in batch
            )
            with args.rows_file.open("a") as f:
                for rows in found:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
    rows = pd.read_json(args.rows_file, lines=True)
    out = {"command": " ".join(sys.argv), "seconds": round(time.perf_counter() - start, 1),
           "regimens": list(REGIMENS), "n": args.n, "refits": args.refits, "fresh": args.fresh,
           "results": summarise(rows)}  # fmt: skip
    (RESULTS / "benefit_regimens.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
