"""Calibrate the simulator's response intercepts to the trial's reported rates.

Targets (``msc_response.simulator.CALIBRATION_TARGETS``, domain.md): Child-Pugh improvement
53.3% pooled over the single-dose arms and 88.9% in the repeated-dose group (all of phase
Ib); MELD improvement 44.4% and albumin rise 88.9% in the repeated-dose group. Each step
moves the intercepts by the logit gap between target and expected rate (the mean true
probability of the realised label, smooth in the intercepts) over 100,000 patients of the
trial design. The result is then checked on the realised labels (the project's scores of
the simulated labs) of 100,000 fresh patients, with Monte Carlo standard errors.
Prints the coefficients to paste into ``msc_response.simulator.RESPONSE_COEF`` and writes
benchmarks/results/calibration.json.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy.special import logit

from msc_response import simulator as sim

from ._common import write_result

N = 100_000


def rates(column: str, seed: int) -> dict[str, dict]:
    chunks = sim.generate_chunks("trial", N, seed, baseline_only=column == "p")
    truth = pd.concat([c.truth for c in chunks], ignore_index=True)
    return truth, sim.calibration_rates(truth, column=column)


def main(iterations: int = 6) -> None:
    coef, targets = sim.RESPONSE_COEF, sim.CALIBRATION_TARGETS
    for it in range(iterations):
        _, r = rates("p", seed=7)
        print(it, {k: round(v["rate"], 4) for k, v in r.items()}, file=sys.stderr)

        def step(key: str, r=r) -> float:
            return float(logit(targets[key]) - logit(np.clip(r[key]["rate"], 1e-3, 1 - 1e-3)))

        coef["child_pugh"]["a"] += step("child_pugh/single")
        coef["child_pugh"]["r"] += step("child_pugh/repeated") - step("child_pugh/single")
        coef["meld"]["a"] += step("meld/repeated")
        coef["albumin"]["a"] += step("albumin/repeated")
    rounded = {ep: {k: round(v, 3) for k, v in c.items()} for ep, c in coef.items()}
    for ep, c in rounded.items():  # the rounded coefficients are the ones checked below
        coef[ep].update(c)
    truth, realised = rates("y", seed=8)
    _, expected = rates("p", seed=9)
    repeated = truth["arm"].isin([a.name for a in sim.TRIAL_ARMS if a.n_infusions > 1])
    write_result("calibration", {
        "coefficients": rounded,
        "n_patients": N,
        "targets": targets,
        "realised": {k: {"rate": round(v["rate"], 4), "mc_se": round(v["se"], 4), "n": v["n"]}
                     for k, v in realised.items()},
        "expected": {k: {"rate": round(v["rate"], 4), "mc_se": round(v["se"], 4)} for k, v in expected.items()},
        "within_5_points": {k: abs(realised[k]["rate"] - t) <= 0.05 for k, t in targets.items()},
        "realised_differs_from_drawn": {ep: round(float((truth[f"y_{ep}"] != truth[f"drawn_{ep}"]).mean()), 5)
                                        for ep in sim.ENDPOINTS},
        "realised_rate_by_arm": {ep: truth.groupby("arm")[f"y_{ep}"].mean().round(4).to_dict()
                                 for ep in sim.ENDPOINTS},
        "repeated_group_n": int(repeated.sum()),
    })  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
