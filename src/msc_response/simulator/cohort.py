"""SIMULATED cohorts chunk by chunk, and in memory: the study tables with their truth.

:func:`generate_chunks` yields the tables of at most :data:`CHUNK` patients at a time
(bounded memory, for the writer); :func:`simulate_tables` gathers a whole cohort in
memory. The designs: ``trial`` (the trial's arms, :data:`~msc_response.domain.TRIAL_ARMS`)
and ``screening`` (each patient's regimen drawn uniformly across them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit

from .. import __version__
from ..domain import TRIAL_ARMS, Arm, regimen_features
from ..errors import ConfigError
from . import followup, model, rct

CHUNK = 20_000
DESIGNS = ("trial", "screening", "rct")

#: Trial layout: the phase Ib split assumed by ``TRIAL_ARMS`` and why.
IB_SPLIT_REASON = (
    "The summary gives 9 phase Ib patients on 1.0 or 2.0 x 10^8 cells weekly x3 (3-6 x 10^8 "
    "in total, so both doses were given) but not the split. Its 'repeated high-dose group' "
    "rates, 88.9% and 44.4%, are 8/9 and 4/9: with 9 patients in phase Ib they can only be "
    "rates over all of them, so the group is the whole of phase Ib and the split does not "
    "change the targets. The default assumes 3 at 1.0 and 6 at 2.0 x 10^8: a dose-escalation "
    "phase usually treats a 3-patient sentinel cohort at the lower dose before expanding at "
    "the higher one, and the summary's safety statement is about 2.0 x 10^8 x3."
)
REPEATED_GROUP_NOTE = (
    "'repeated high-dose group' = every repeated-dose arm pooled (all of phase Ib: "
    "the published 8/9 and 4/9 need a denominator of 9)"
)
#: Published response rates (domain.md) and the group each refers to: ``single`` = every
#: single-dose arm pooled, ``repeated`` = every repeated-dose arm pooled.
CALIBRATION_TARGETS = {
    "child_pugh/single": 0.533,
    "child_pugh/repeated": 0.889,
    "meld/repeated": 0.444,
    "albumin/repeated": 0.889,
}


class Chunk(NamedTuple):
    """One chunk of a simulated cohort: the study tables and the truth."""

    patients: pd.DataFrame
    labs: pd.DataFrame
    cells: pd.DataFrame
    truth: pd.DataFrame


@dataclass
class SimulatedTables:
    """A whole simulated cohort in memory (the tables follow the data contract)."""

    patients: pd.DataFrame
    labs: pd.DataFrame
    cells: pd.DataFrame
    truth: pd.DataFrame
    metadata: dict = field(default_factory=dict)


def simulate_chunk(rng: np.random.Generator, arms: tuple[Arm, ...], arm_index: np.ndarray,
                    first_id: int, *, baseline_only: bool = False,
                    design: rct.RctDesign | None = None) -> Chunk:  # fmt: skip
    """Simulate one chunk of patients, patient ``i`` on ``arms[arm_index[i]]``.

    With a randomised ``design`` the arms are ``design.arms`` and the assignment is drawn
    after the baseline (stratified randomisation): ``arm_index`` only gives the size.
    """
    n = len(arm_index)
    base = model.eligible_baseline(rng, n)
    si = base["si"]
    etiology = np.asarray(model.ETIOLOGIES)[base["etiology"]]
    cholestatic = np.isin(etiology, list(model.CHOLESTATIC))
    sex_f = rng.random(n) < 0.25
    age = np.round(rng.normal(52, 10, n).clip(18, 75)).astype(int)
    if design is not None:
        arms = design.arms
        arm_index = rct.assign(rng, model.child_pugh_of(base, cholestatic), design)

    n_inf = np.array([a.n_infusions for a in arms])[arm_index]
    # standard care has no dose (missing, never 0 cells: the study reader's range)
    dose = np.where(n_inf > 0, np.array([a.dose_per_infusion for a in arms])[arm_index], np.nan)
    interval = np.array([a.interval_days for a in arms])[arm_index]
    regimen = regimen_features(dose, n_inf, interval)
    log_dose = np.log(regimen["cumulative_dose_1e8"])
    s, u = base["severity"], base["responsiveness"]
    z = (base["inflammation"] - model.MX1_LOGIT["intercept"]) / model.MX1_LOGIT_SD
    moves = followup.lab_moves(base, si, cholestatic)
    if design is None:
        p_drawn = model.response_probabilities(log_dose, (n_inf > 1).astype(float), z, s, u)
        potential = {}
    else:
        p_drawn, potential = rct.potential_outcomes(design, arm_index, z, s, u, moves)
    drawn = {ep: (rng.random(n) < p_drawn[ep]).astype(float) for ep in model.ENDPOINTS}
    p_true = followup.realised_probabilities(p_drawn, moves)

    ids = np.array([f"SIM-{first_id + i:07d}" for i in range(n)])
    arm_names = np.array([a.name for a in arms])[arm_index]
    patients = pd.DataFrame({
        "patient_id": ids, "sex": np.where(sex_f, "F", "M"), "age_years": age, "etiology": etiology,
        "arm": arm_names, "dose_per_infusion": dose, "n_infusions": n_inf, "interval_days": interval,
    })  # fmt: skip
    truth = pd.DataFrame({"patient_id": ids, "arm": arm_names})
    for ep in model.ENDPOINTS:
        truth[f"p_{ep}"] = np.round(p_true[ep], 6)
    for col, v in potential.items():
        truth[col] = np.round(v, 6)

    values: dict[int, dict[str, np.ndarray]] = {0: {t: base[t] for t in model.LAB_TESTS}}
    values[-7] = model.visit_labs(rng, base, base, si, np.zeros(n), np.ones(n))
    if not baseline_only:
        y = followup.realised_labels(drawn, moves)
        fu = followup.day28_labs(rng, base, si, cholestatic, y, moves)
        model.other_day28_labs(rng, base, fu, si, u)
        values[model.FOLLOW_UP_DAY] = fu
        threshold = rng.uniform(0.3, 0.7, n)
        for d in (3, 7, 14, 21):
            values[d] = model.visit_labs(
                rng, base, fu, si, model.course_fraction(d, n_inf, interval), threshold
            )
        for ep in model.ENDPOINTS:
            truth[f"y_{ep}"] = y[ep].astype(int)
        for ep in model.ENDPOINTS:
            truth[f"drawn_{ep}"] = drawn[ep].astype(int)
    truth["severity"] = np.round(s, 4)
    truth["inflammation_z"] = np.round(z, 4)
    truth["responsiveness"] = np.round(u, 4)
    labs = long_labs(ids, values, model.BASELINE_VISITS if baseline_only else model.VISITS, si)

    cell_days = (0,) if baseline_only else model.CELL_VISITS
    d = model.MX1_DIP
    amp = (d["intercept"] + d["responsiveness"] * u + d["log_dose_per_infusion"]
           * np.log(regimen["dose_per_infusion_1e8"]) + d["noise_sd"] * rng.standard_normal(n))  # fmt: skip
    amp = np.where(n_inf > 0, amp.clip(d["min"], d["max"]), 0.0)  # no cells, no dip
    course = model.mx1_course(rng, expit(base["inflammation"]), amp, n_inf, interval, cell_days)
    k = len(cell_days)
    cells = pd.DataFrame({
        "patient_id": pd.Categorical.from_codes(np.repeat(np.arange(n), k), categories=ids),
        "day": np.tile(np.array(cell_days, dtype=np.int64), n),
        "population": pd.Categorical.from_codes(np.zeros(n * k, dtype=np.int8), categories=["MX1+ monocytes"]),
        "parent": pd.Categorical.from_codes(np.zeros(n * k, dtype=np.int8), categories=["monocytes"]),
        "fraction": np.column_stack([course[c] for c in cell_days]).ravel(),
    })  # fmt: skip
    return Chunk(patients, labs, cells, truth)


def long_labs(ids, values, visits, si) -> pd.DataFrame:
    """The labs table, rows by patient, then visit, then test (the order sites export)."""
    n, n_visits, n_tests = len(ids), len(visits), len(model.LAB_TESTS)
    written = np.empty((n, n_visits, n_tests))
    unit = np.empty((n, n_visits, n_tests), dtype=np.int8)
    code = {u: i for i, u in enumerate(model.UNIT_CATEGORIES)}
    for k, t in enumerate(model.LAB_TESTS):
        unit_t = code[model.WRITTEN_UNIT[t]]
        if t in model.SI:
            unit_t = np.where(si, code[model.SI[t][0]], unit_t)
        unit[:, :, k] = np.asarray(unit_t)[..., None] if t in model.SI else unit_t
        for j, d in enumerate(visits):
            written[:, j, k] = model.written_values(t, values[d][t], si)
    return pd.DataFrame({
        "patient_id": pd.Categorical.from_codes(np.repeat(np.arange(n), n_visits * n_tests), categories=ids),
        "day": np.tile(np.repeat(np.asarray(visits, dtype=np.int64), n_tests), n),
        "test": pd.Categorical.from_codes(np.tile(np.arange(n_tests, dtype=np.int8), n * n_visits),
                                          categories=list(model.LAB_TESTS)),
        "value": written.ravel(),
        "unit": pd.Categorical.from_codes(unit.ravel(), categories=model.UNIT_CATEGORIES),
    })  # fmt: skip


def scaled_arms(arms: tuple[Arm, ...], n_patients: int | None) -> list[Arm]:
    """Arm sizes scaled in proportion to ``n_patients`` (largest remainders get the rest)."""
    if n_patients is None:
        return list(arms)
    total = sum(a.size for a in arms)
    exact = np.array([a.size * n_patients / total for a in arms])
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: n_patients - sizes.sum()]:
        sizes[i] += 1
    return [
        Arm(a.name, a.dose_per_infusion, a.n_infusions, a.interval_days, int(s))
        for a, s in zip(arms, sizes, strict=True)
    ]


def is_whole(x) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


#: Patients of a randomised design when none is given (the planned phase 2, NCT05224960).
RCT_DEFAULT_PATIENTS = 140


def check_parameters(design, n_patients, seed) -> None:
    """Raise :class:`~msc_response.errors.ConfigError` naming a bad parameter."""
    if design not in DESIGNS:
        raise ConfigError(f"design: expected one of {list(DESIGNS)}, got {design!r}")
    if design == "screening" and n_patients is None:
        raise ConfigError("n_patients: required (a whole number >= 1) for the screening design")
    if n_patients is not None and not (is_whole(n_patients) and n_patients >= 1):
        raise ConfigError(f"n_patients: expected a whole number >= 1, got {n_patients!r}")
    if not (is_whole(seed) and seed >= 0):
        raise ConfigError(f"seed: expected a whole number >= 0, got {seed!r}")


def generate_chunks(design: str = "trial", n_patients: int | None = None, seed: int = 0, *,
                    baseline_only: bool = False, arms: tuple[Arm, ...] = TRIAL_ARMS,
                    rct_design: rct.RctDesign | None = None) -> Iterator[Chunk]:  # fmt: skip
    """Simulate a cohort chunk by chunk (at most :data:`CHUNK` patients each; bounded memory).

    Parameters
    ----------
    design : {"trial", "screening", "rct"}
        ``trial``: the trial's arms (``arms``; sizes scaled to ``n_patients``, default 33);
        ``screening``: each patient's regimen drawn uniformly across ``arms``;
        ``rct``: standard care versus MSC randomised by ``rct_design``
        (:mod:`~msc_response.simulator.rct`; default 140 patients, 1:1, MX1+ ``both``).
    n_patients : int, optional
        Number of patients (required for ``screening``).
    seed : int
        Seed of every random draw: the same seed gives the same tables.
    baseline_only : bool
        Only screening and baseline visits (what a screening site sends); no labels.

    Raises
    ------
    ConfigError
        A bad parameter (raised at the call, before any chunk), naming it.
    """
    check_parameters(design, n_patients, seed)
    if rct_design is not None and design != "rct":
        raise ConfigError(f"rct_design: only for design 'rct', got design {design!r}")
    if design == "rct":
        rct_design = rct_design or rct.RctDesign()
        n_patients = RCT_DEFAULT_PATIENTS if n_patients is None else n_patients
    if design == "trial":
        sized = scaled_arms(arms, n_patients)
        layout = np.repeat(np.arange(len(sized)), [a.size for a in sized])
    else:
        layout = None
    total = len(layout) if layout is not None else int(n_patients)
    return _chunks(tuple(arms), layout, total, seed, baseline_only, rct_design)


def _chunks(arms, layout, total, seed, baseline_only, rct_design=None) -> Iterator[Chunk]:
    for k, lo in enumerate(range(0, total, CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, k)))
        hi = min(total, lo + CHUNK)
        if rct_design is not None:  # assigned inside, after the baseline
            index = np.zeros(hi - lo, dtype=int)
        else:
            index = layout[lo:hi] if layout is not None else rng.integers(0, len(arms), hi - lo)
        yield simulate_chunk(
            rng, arms, index, lo + 1, baseline_only=baseline_only, design=rct_design
        )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunks into one table; patient ids stay one categorical."""
    if len(frames) == 1:
        return frames[0]
    ids = pd.api.types.union_categoricals([f["patient_id"] for f in frames])
    out = pd.concat(frames, ignore_index=True)
    out["patient_id"] = ids
    return out


def simulate_tables(design: str = "trial", n_patients: int | None = None, seed: int = 0, *,
                    baseline_only: bool = False, arms: tuple[Arm, ...] = TRIAL_ARMS,
                    rct_design: rct.RctDesign | None = None) -> SimulatedTables:  # fmt: skip
    """A whole SIMULATED cohort in memory (see :func:`generate_chunks` for the parameters).

    The same seed gives the tables that
    :func:`~msc_response.simulator.output.write_simulation` writes; ``metadata``
    is the content of ``simulation.json`` without ``format``.
    """
    chunks = list(generate_chunks(design, n_patients, seed, baseline_only=baseline_only, arms=arms,
                                  rct_design=rct_design))  # fmt: skip
    patients = pd.concat([c.patients for c in chunks], ignore_index=True)
    truth = pd.concat([c.truth for c in chunks], ignore_index=True)
    meta = metadata(design, seed, len(patients), baseline_only, arms, truth, rct_design)
    return SimulatedTables(patients, _concat([c.labs for c in chunks]),
                           _concat([c.cells for c in chunks]), truth, meta)  # fmt: skip


def calibration_rates(
    truth: pd.DataFrame, arms: tuple[Arm, ...] = TRIAL_ARMS, column: str = "y"
) -> dict[str, dict]:
    """Rates of :data:`CALIBRATION_TARGETS` in ``truth``: ``column`` ``y`` (realised labels)
    or ``p`` (expected), each with its Monte Carlo standard error and group size."""
    repeated = {a.name for a in arms if a.n_infusions > 1}
    groups = {"single": ~truth["arm"].isin(repeated), "repeated": truth["arm"].isin(repeated)}
    out = {}
    for key in CALIBRATION_TARGETS:
        ep, group = key.split("/")
        x = truth.loc[groups[group], f"{column}_{ep}"].to_numpy(dtype=float)
        rate = float(x.mean())
        se = (
            float(np.sqrt(rate * (1 - rate) / len(x)))
            if column == "y"
            else float(x.std(ddof=1) / np.sqrt(len(x)))
        )
        out[key] = {"rate": rate, "se": se, "n": len(x)}
    return out


def metadata(design, seed, total, baseline_only, arms, truth, rct_design=None) -> dict:
    """The content of ``simulation.json`` (without ``format``)."""
    if design == "rct":
        rct_design = rct_design or rct.RctDesign()
        sizes = truth["arm"].value_counts()
        arms = tuple(replace(a, size=int(sizes.get(a.name, 0))) for a in rct_design.arms)
    from sklearn.metrics import roc_auc_score

    repeated = {a.name: a.size for a in arms if a.n_infusions > 1}
    meta = {
        "simulated": True,
        "note": model.SIMULATED_NOTE,
        "design": design,
        "seed": seed,
        "n_patients": int(total),
        "baseline_only": baseline_only,
        "package_version": __version__,
        "parameters": {
            "arms": [asdict(a) for a in arms],
            "visits": list(model.BASELINE_VISITS if baseline_only else model.VISITS),
            "cell_visits": [0] if baseline_only else list(model.CELL_VISITS),
            "latent_traits": model.LATENT_TRAITS,
            "response_model": "logit p_e = a + b log D + r R + g z + h z log D - k s + u u "
                              "(D cumulative dose / 1e8, R repeated dosing); labels independent given the traits",
            "response_coefficients": model.RESPONSE_COEF,
            "mx1": {"logit": model.MX1_LOGIT, "dip": model.MX1_DIP, "measurement_sd": model.MX1_MEASUREMENT_SD,
                    "immune_effect": {"peak_day": model.EFFECT_PEAK_DAY, "width_days": model.EFFECT_WIDTH_DAYS}},
            "day28_change_limits": {**{t: list(f) for t, f in followup.FACTORS.items()},
                                    "albumin_g_dL": [followup.ALBUMIN_STEPS[0] / 10, followup.ALBUMIN_STEPS[1] / 10]},
            "chunk_size": CHUNK,
        },  # fmt: skip
        "trial_layout": {
            "phase_ib_split": repeated,
            "phase_ib_split_reason": IB_SPLIT_REASON,
            "repeated_high_dose_group": REPEATED_GROUP_NOTE,
        },
        "calibration_targets": CALIBRATION_TARGETS,
        "truth": "p_* = probability of the realised label given everything the simulator knows "
                 "(traits, regimen, baseline labs); y_* = labels the project's scores give on the "
                 "written labs; drawn_* = the draws",
    }  # fmt: skip
    if design == "rct":
        meta.update(rct.metadata(rct_design, truth))
    if not baseline_only:
        oracle, rates, differ = {}, {}, {}
        for ep in model.ENDPOINTS:
            y, p = truth[f"y_{ep}"], truth[f"p_{ep}"]
            oracle[ep] = round(float(roc_auc_score(y, p)), 4) if y.nunique() == 2 else None
            rates[ep] = {arm: round(float(v), 4)
                         for arm, v in truth.groupby("arm", sort=True)[f"y_{ep}"].mean().items()}  # fmt: skip
            differ[ep] = round(float((y != truth[f"drawn_{ep}"]).mean()), 5)
        meta["oracle_roc_auc"] = oracle
        meta["realised_response_rate_by_arm"] = rates
        meta["realised_differs_from_drawn"] = differ
    return meta
