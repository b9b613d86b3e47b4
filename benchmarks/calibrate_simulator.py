"""Calibrate the simulator's response intercepts to the trial's reported rates.

Targets (domain.md): Child-Pugh improvement ~53% pooled over the single-dose arms and ~89%
with 3 x 2.0e8 cells; MELD improvement ~44% and albumin rise ~89% with 3 x 2.0e8 cells.
Rates are computed on the realised labels (scores of the simulated labs), over 100,000
patients in the trial's arm proportions. Prints the coefficients to paste into
``msc_response.simulate.RESPONSE_COEF`` and writes benchmarks/results/calibration.json.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import logit

from _common import write_result
from msc_response import simulate as sim

TARGETS = {"cp_single": 0.533, "cp_high": 0.889, "meld_high": 0.444, "alb_high": 0.889}


def realised_rates(n: int = 100_000, seed: int = 7) -> dict[str, float]:
    arms = [a for a in sim.scaled_arms(sim.TRIAL_ARMS, n) for _ in range(a.size)]
    rng = np.random.default_rng(seed)
    parts = [
        sim.simulate_chunk(rng, arms[i : i + sim.CHUNK], i + 1)["truth"]
        for i in range(0, n, sim.CHUNK)
    ]
    import pandas as pd

    truth = pd.concat(parts, ignore_index=True)
    single = truth["arm"].str.startswith("Ia")
    high = truth["arm"] == "Ib 2.0e8 x3"
    return {
        "cp_single": truth.loc[single, "y_child_pugh"].mean(),
        "cp_high": truth.loc[high, "y_child_pugh"].mean(),
        "meld_high": truth.loc[high, "y_meld"].mean(),
        "alb_high": truth.loc[high, "y_albumin"].mean(),
        "mismatch_cp": (truth["y_child_pugh"] != truth["drawn_child_pugh"]).mean(),
        "mismatch_meld": (truth["y_meld"] != truth["drawn_meld"]).mean(),
        "mismatch_albumin": (truth["y_albumin"] != truth["drawn_albumin"]).mean(),
    }


def main(iterations: int = 6) -> None:
    coef = sim.RESPONSE_COEF
    for it in range(iterations):
        r = realised_rates()
        print(it, {k: round(float(v), 4) for k, v in r.items()}, file=sys.stderr)
        step = lambda key, r=r: logit(TARGETS[key]) - logit(np.clip(r[key], 1e-3, 1 - 1e-3))  # noqa: E731
        coef["child_pugh"]["a"] += step("cp_single")
        coef["child_pugh"]["r"] += step("cp_high") - step("cp_single")
        coef["meld"]["a"] += step("meld_high")
        coef["albumin"]["a"] += step("alb_high")
    final = realised_rates()
    rounded = {ep: {k: round(v, 3) for k, v in c.items()} for ep, c in coef.items()}
    write_result(
        "calibration",
        {
            "coefficients": rounded,
            "realised": {k: round(float(v), 4) for k, v in final.items()},
            "targets": TARGETS,
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
