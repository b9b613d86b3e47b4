"""Domain facts of the phase Ia/Ib trial, each stated once.

Shi L, Zhang Z, Mei S, et al. Signal Transduct Target Ther 2025;10:238 (NCT05227846,
NCT05984303). The simulator draws its cohorts from these arms, the feature builder turns
a patient's regimen into features with :func:`regimen_features`, and what-if scoring
sets each arm's regimen with :func:`arm_regimens`: one formula for all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: Cells per unit of the dose features (doses are given in multiples of 10^8 cells).
DOSE_UNIT = 1e8


@dataclass(frozen=True)
class Arm:
    """A dosing regimen and its size in the trial design."""

    name: str
    dose_per_infusion: float  # cells
    n_infusions: int
    interval_days: int
    size: int


#: The trial's arms (33 patients). Phase Ia: four single-dose cohorts of 6. Phase Ib: 9
#: patients with three weekly infusions of 1.0 or 2.0 x 10^8 cells; the summary does not
#: give the split: 3 + 6 is an assumption (``simulator.IB_SPLIT_REASON`` says why).
TRIAL_ARMS: tuple[Arm, ...] = (
    Arm("Ia 0.5e8 x1", 0.5e8, 1, 0, 6),
    Arm("Ia 1.0e8 x1", 1.0e8, 1, 0, 6),
    Arm("Ia 1.5e8 x1", 1.5e8, 1, 0, 6),
    Arm("Ia 2.0e8 x1", 2.0e8, 1, 0, 6),
    Arm("Ib 1.0e8 x3", 1.0e8, 3, 7, 3),
    Arm("Ib 2.0e8 x3", 2.0e8, 3, 7, 6),
)

#: The control arm of a randomised design (conventional treatment without cells): its name
#: in the simulator's ``arm`` column and the default ``benefit.control_value``.
STANDARD_CARE = "standard care"

#: The regimen features, in order.
REGIMEN_FEATURES = ("dose_per_infusion_1e8", "n_infusions", "cumulative_dose_1e8", "interval_days")


def regimen_features(dose_per_infusion, n_infusions, interval_days=None) -> dict[str, np.ndarray]:
    """The regimen as features: dose per infusion and cumulative dose in 10^8 cells.

    ``interval_days`` may be None (a study without it has no ``interval_days`` feature).
    """
    dose = np.asarray(dose_per_infusion, dtype=float) / DOSE_UNIT
    n_inf = np.asarray(n_infusions, dtype=float)
    out = {"dose_per_infusion_1e8": dose, "n_infusions": n_inf, "cumulative_dose_1e8": dose * n_inf}
    if interval_days is not None:
        out["interval_days"] = np.asarray(interval_days, dtype=float)
    return out


def arm_regimens(arms: tuple[Arm, ...] = TRIAL_ARMS) -> list[tuple[str, dict[str, float]]]:
    """Each arm's name and regimen features (what-if scoring sets these)."""
    return [
        (a.name, {k: float(v) for k, v in
                  regimen_features(a.dose_per_infusion, a.n_infusions, a.interval_days).items()})
        for a in arms
    ]  # fmt: skip


#: What the models are for: the model card's intended use (pages and MLflow descriptions).
INTENDED_USE = (
    "Intended use: to estimate, for a patient with decompensated cirrhosis who is to receive umbilical-cord "
    "MSC therapy on one of the trial's regimens, the probability that the endpoint improves by the "
    "follow-up day, from data available at the start of treatment; for trial teams and their statisticians, "
    "to plan and stratify studies and to generate hypotheses."
)


def slug(name: str) -> str:
    """A column-safe name of a regimen, a test or a cell population: one rule, because the
    simulator's truth columns, the features and the score columns must agree.

    Examples
    --------
    >>> slug("MX1+ monocytes"), slug("2.0e8 x3")
    ('mx1_monocytes', '2_0e8_x3')
    """
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")
