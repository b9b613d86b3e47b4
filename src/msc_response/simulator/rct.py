"""SIMULATED randomised controlled trials: standard care versus MSC, with potential outcomes.

The single-arm trial cannot tell the cells' effect from the natural course of the disease.
A randomised design can, and a simulator that knows every patient's two potential
outcomes can prove what a benefit model claims. The patients are the single-arm
simulator's (same latent traits, baseline labs, eligibility, day-28 labs that realise the
labels, MX1+ course); what differs is the response model and the assignment.

Response model (logit of each endpoint's *drawn* label, per patient)
--------------------------------------------------------------------
``z`` the standardised MX1+ inflammation, ``s`` severity, ``u`` responsiveness
(:mod:`~msc_response.simulator.model`)::

    control:  eta0_e = c_e + prog * g_e * z - k_e s + w_e u
    regimen:  eta1_e = eta0_e + d_e + b_e (log D - log D_ref) + r_e (R - R_ref) + pred * h_e * z

* ``prog`` (1 under ``prognostic`` and ``both``): MX1+ predicts the outcome in both arms
  equally (the same log-odds in control and treated).
* ``pred`` (1 under ``predictive`` and ``both``): MX1+ modifies the effect of the cells
  (an interaction on the logit scale).
* ``neither``: both 0. ``u`` acts in both arms equally (the natural course and the cells'
  response share it), so it is prognostic, never an unmeasured effect modifier.
* The effect ``d_e`` is at the reference regimen (:data:`DEFAULT_REGIMEN`); other regimens
  shift it with the single-arm simulator's dose and repetition coefficients ``b_e``,
  ``r_e`` (:data:`~msc_response.simulator.model.RESPONSE_COEF`). A regimen whose effect
  would fall below 0 (every single infusion, for Child-Pugh) has none, and no MX1+
  interaction: ASSUMED, the cells do not harm; the single-arm coefficients include the
  natural course and cannot be extrapolated into harm.
* The scale: prognostic and predictive are defined on the **logit** scale, the model's own.
  On the risk-difference scale a prognostic marker still changes the absolute benefit
  through the baseline risk (a constant odds ratio gives larger differences near 50%):
  :func:`~msc_response.modeling.benefit` reports the interaction on both scales.

The realised labels are the drawn ones unless the day-28 labs cannot realise them
(:mod:`~msc_response.simulator.followup`); ``p_response_control`` and
``p_response_treated`` are the probabilities of the *realised* Child-Pugh label in each
arm (the project's primary endpoint, a fall of >= 1 point by day 28), and
``true_benefit`` is their difference. With several regimens the treated columns carry the
regimen's slug (``p_response_treated__msc_2_0e8_x3``).

Calibration of the control arm (assumed where not published)
------------------------------------------------------------
Published controlled data (NCT01220492: Shi M et al., conventional treatment plus
umbilical-cord MSC versus plus placebo, 219 patients, long-term survival and liver
function; Lin BL et al. 2017 for ACLF) report means and survival, not the proportion of
control patients whose Child-Pugh score falls by >= 1 point at day 28. The control rates
below are therefore ASSUMPTIONS, stated so they can be replaced: about a third of
decompensated patients under standard care improve by one Child-Pugh point within four
weeks (diuretics control ascites; a one-point change is within measurement noise; patients
enrol at a bad moment and regress to their mean). The treated rates at the reference
regimen are a phase II planning assumption (an absolute gain of about 0.25), well below
the phase Ib single-arm 88.9%, which mixes the cells' effect with that natural course.
The coefficients were set by hand to meet these rates; a test checks the realised rates
on 20,000 patients (within 0.03 of the targets under ``neither``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from ..domain import STANDARD_CARE, Arm, regimen_features, slug
from ..errors import ConfigError
from . import followup, model

MX1_ROLES = ("predictive", "prognostic", "both", "neither")
CONTROL_ARM = Arm(STANDARD_CARE, 0.0, 0, 0, 0)
#: The reference MSC regimen (phase Ib's 1.0 x 10^8 cells weekly x3).
DEFAULT_REGIMEN = Arm("MSC 1.0e8 x3", 1.0e8, 3, 7, 0)
#: The endpoint whose potential outcomes ``truth.csv`` gives (the config's default).
BENEFIT_ENDPOINT = "child_pugh"

#: Assumed realised rates at z = 0 marginal over the cohort (see the module docstring).
CONTROL_TARGETS = {"child_pugh": 0.35, "meld": 0.25, "albumin": 0.45}
TREATED_TARGETS = {"child_pugh": 0.60, "meld": 0.38, "albumin": 0.70}
#: Per-endpoint coefficients: control intercept ``c``, effect at the reference regimen
#: ``d`` (set to meet the targets under ``neither``), prognostic
#: ``g`` and predictive ``h`` log-odds per SD of z, severity ``k``, responsiveness ``w``.
RCT_COEF: dict[str, dict[str, float]] = {
    "child_pugh": {"c": -0.70, "d": 1.20, "g": 0.6, "h": 0.8, "k": 0.25, "w": 0.7},
    "meld": {"c": -1.10, "d": 0.60, "g": 0.4, "h": 0.4, "k": 0.10, "w": 0.6},
    "albumin": {"c": -0.20, "d": 1.10, "g": 0.3, "h": 0.4, "k": 0.10, "w": 0.6},
}
#: Child-Pugh classes used as randomisation strata (the trial enrols 7-12: B and C).
STRATA = {"B (7-9)": (7, 9), "C (10-12)": (10, 12)}


@dataclass(frozen=True)
class RctDesign:
    """A randomised design: standard care versus one or more MSC regimens.

    ``ratio`` gives the allocation weights, control first, then each regimen (1:1 by
    default). Randomisation is by permuted blocks (each block holds every arm
    ``block_multiple`` times its ratio weight) within Child-Pugh class strata when
    ``stratified``.
    """

    regimens: tuple[Arm, ...] = (DEFAULT_REGIMEN,)
    ratio: tuple[int, ...] = (1, 1)
    mx1_role: str = "both"
    stratified: bool = True
    block_multiple: int = 2

    def __post_init__(self):
        if self.mx1_role not in MX1_ROLES:
            raise ConfigError(f"mx1_role: expected one of {list(MX1_ROLES)}, got {self.mx1_role!r}")
        if not self.regimens or any(a.n_infusions < 1 for a in self.regimens):
            raise ConfigError(f"regimens: expected one or more MSC regimens, got {self.regimens!r}")
        if len({a.name for a in self.regimens}) != len(self.regimens) or any(
            a.name == CONTROL_ARM.name for a in self.regimens
        ):
            raise ConfigError(
                f"regimens: names must differ from each other and from {CONTROL_ARM.name!r}"
            )
        ok = len(self.ratio) == len(self.regimens) + 1 and all(
            isinstance(r, int | np.integer) and not isinstance(r, bool) and r >= 1
            for r in self.ratio
        )
        if not ok:
            raise ConfigError(
                f"ratio: expected {len(self.regimens) + 1} whole numbers >= 1 (control first, then "
                f"each regimen), got {self.ratio!r}"
            )
        if not (isinstance(self.block_multiple, int) and self.block_multiple >= 1):
            raise ConfigError(
                f"block_multiple: expected a whole number >= 1, got {self.block_multiple!r}"
            )

    @property
    def arms(self) -> tuple[Arm, ...]:
        """Control first, then the regimens (sizes 0: the randomisation decides)."""
        return (CONTROL_ARM, *self.regimens)

    @property
    def prognostic(self) -> float:
        return float(self.mx1_role in ("prognostic", "both"))

    @property
    def predictive(self) -> float:
        return float(self.mx1_role in ("predictive", "both"))


def parse_ratio(text: str) -> tuple[int, ...]:
    """``"1:1"`` or ``"1:2"`` -> (1, 1) / (1, 2); errors name the option."""
    parts = str(text).split(":")
    if len(parts) < 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(
            f"ratio: expected whole numbers >= 1 separated by ':' (control first), got {text!r}"
        )
    return tuple(int(p) for p in parts)


def parse_regimen(text: str) -> Arm:
    """``"1.0e8x3"`` (dose per infusion x infusions, weekly) -> an MSC :class:`Arm`."""
    m = re.fullmatch(r"\s*([0-9.]+e[0-9]+)\s*x\s*([0-9]+)\s*", str(text))
    dose = float(m.group(1)) if m else 0.0
    if not m or not (1e6 <= dose <= 1e10) or not (1 <= int(m.group(2)) <= 20):
        raise ConfigError(
            f"regimen: expected DOSExN such as '1.0e8x3' (1e6-1e10 cells, 1-20 infusions), got {text!r}"
        )
    n = int(m.group(2))
    return Arm(f"MSC {dose:.1e} x{n}".replace("e+0", "e"), dose, n, 7 if n > 1 else 0, 0)


def design_from_options(design: str, mx1_role=None, ratio=None, regimens=None) -> RctDesign | None:
    """The :class:`RctDesign` of the CLI's options (None unless ``design`` is ``rct``)."""
    given = {"mx1_role": mx1_role, "ratio": ratio, "regimen": regimens or None}
    if design != "rct":
        used = [k for k, v in given.items() if v is not None]
        if used:
            raise ConfigError(f"{used[0]}: only for design 'rct', got design {design!r}")
        return None
    arms = tuple(parse_regimen(r) for r in regimens) if regimens else (DEFAULT_REGIMEN,)
    weights = parse_ratio(ratio) if ratio is not None else (1,) * (len(arms) + 1)
    return RctDesign(regimens=arms, ratio=weights, mx1_role=mx1_role or "both")


def assign(rng: np.random.Generator, cp_score: np.ndarray, design: RctDesign) -> np.ndarray:
    """Arm index (0 control, k regimen k) of each patient in enrolment order.

    Permuted blocks within Child-Pugh class strata (one stratum when not stratified).
    """
    n = len(cp_score)
    block = np.repeat(
        np.arange(len(design.ratio)), np.asarray(design.ratio) * design.block_multiple
    )
    strata = [np.ones(n, dtype=bool)]
    if design.stratified:
        strata = [(cp_score >= lo) & (cp_score <= hi) for lo, hi in STRATA.values()]
    out = np.full(n, -1)
    for members in strata:
        k = int(members.sum())
        n_blocks = -(-k // len(block))
        seq = (
            np.concatenate([rng.permutation(block) for _ in range(n_blocks)])
            if n_blocks
            else block[:0]
        )
        out[members] = seq[:k]
    if (out < 0).any():
        raise RuntimeError("simulator bug: a patient outside every randomisation stratum")
    return out


def arm_logits(
    design: RctDesign, arm: Arm | None, z, severity, responsiveness
) -> dict[str, np.ndarray]:
    """Logit of each endpoint's drawn label under ``arm`` (None: standard care)."""
    out = {}
    ref = regimen_features(DEFAULT_REGIMEN.dose_per_infusion, DEFAULT_REGIMEN.n_infusions)
    for ep, c in RCT_COEF.items():
        eta = c["c"] + design.prognostic * c["g"] * z - c["k"] * severity + c["w"] * responsiveness
        if arm is not None:
            reg = regimen_features(arm.dose_per_infusion, arm.n_infusions)
            b, r = model.RESPONSE_COEF[ep]["b"], model.RESPONSE_COEF[ep]["r"]
            shift = b * (
                np.log(reg["cumulative_dose_1e8"]) - np.log(ref["cumulative_dose_1e8"])
            ) + r * (float(arm.n_infusions > 1) - float(DEFAULT_REGIMEN.n_infusions > 1))
            effect = c["d"] + float(shift)
            # The shift borrows the single-arm model's dose and repetition coefficients, whose
            # responses include the natural course; extrapolated below the reference they would
            # make one infusion *harm* (-1.5 on the logit for 0.5e8 x1). Assumed instead: a
            # regimen below the reference does at worst nothing (no effect, no MX1+ interaction).
            if effect > 0:
                eta = eta + effect + design.predictive * c["h"] * z
        out[ep] = eta
    return out


def potential_outcomes(design: RctDesign, arm_index, z, severity, responsiveness, moves):
    """The drawn-label probabilities of each patient's own arm, and the truth columns.

    Returns ``(p_drawn, columns)``: ``p_drawn`` per endpoint for the assigned arm;
    ``columns`` the potential outcomes of :data:`BENEFIT_ENDPOINT` (realised labels).
    """
    arms = (None, *design.regimens)
    drawn = [
        {ep: expit(v) for ep, v in arm_logits(design, a, z, severity, responsiveness).items()}
        for a in arms
    ]
    realised = [followup.realised_probabilities(p, moves)[BENEFIT_ENDPOINT] for p in drawn]
    p_drawn = {ep: np.choose(arm_index, [p[ep] for p in drawn]) for ep in model.ENDPOINTS}
    columns = {"p_response_control": realised[0]}
    several = len(design.regimens) > 1
    for a, p in zip(design.regimens, realised[1:], strict=True):
        tail = f"__{slug(a.name)}" if several else ""
        columns[f"p_response_treated{tail}"] = p
        columns[f"true_benefit{tail}"] = p - realised[0]
    if several:  # the patient's own regimen (control: none)
        own = np.choose(arm_index, realised)
        columns["true_benefit"] = np.where(arm_index > 0, own - realised[0], np.nan)
    return p_drawn, columns


def metadata(design: RctDesign, truth: pd.DataFrame) -> dict:
    """What ``simulation.json`` adds for a randomised design."""
    arms = truth["arm"].value_counts().to_dict()
    benefit_cols = [c for c in truth.columns if c.startswith("true_benefit__")] or ["true_benefit"]
    return {
        "randomised": True,
        "treatment_column": "arm",
        "control_value": CONTROL_ARM.name,
        "mx1_role": design.mx1_role,
        "allocation_ratio": list(design.ratio),
        "randomisation": ("permuted blocks of " + str(sum(design.ratio) * design.block_multiple)
                          + (" within Child-Pugh class strata " + str(list(STRATA)) if design.stratified else "")),
        "arm_sizes": {str(k): int(v) for k, v in sorted(arms.items())},
        "benefit_endpoint": f"{BENEFIT_ENDPOINT}: a fall of >= 1 point by day 28",
        "rct_response_model": "control: logit = c + prog g z - k s + w u; regimen: + d + b (log D - log D_ref) "
                              "+ r (R - R_ref) + pred h z",
        "rct_coefficients": RCT_COEF,
        "control_targets_assumed": CONTROL_TARGETS,
        "treated_targets_assumed": TREATED_TARGETS,
        "true_ate": {c: round(float(truth[c].mean()), 5) for c in benefit_cols},
        "truth_potential_outcomes": "p_response_control / p_response_treated = probability of the realised "
                                    "Child-Pugh label under each arm; true_benefit = their difference",
    }  # fmt: skip
