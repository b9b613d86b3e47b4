"""The simulator's generative model: latent traits, baseline labs, responses, MX1+ course.

Individual patient data of the phase Ia/Ib trial (Shi et al., Signal Transduct Target
Ther 2025;10:238) are not public. These pure functions (arrays and a numpy Generator in,
arrays out) define the SIMULATED patients; :mod:`~msc_response.simulator.followup` builds
day-28 labs that realise the drawn labels, :mod:`~msc_response.simulator.cohort` puts
chunks of patients into the study tables.

Generative model
----------------
* **Latent traits** (known to the simulator, never written as features). Severity
  ``s ~ N(0, 1)``; inflammation, the logit of the true MX1+ monocyte fraction,
  ``-1.4 + 0.45 s + 0.55 e`` (``z`` is its standardised value: more systemic
  inflammation, more MX1+ cells); responsiveness ``u ~ N(0, 1)``, independent of both:
  how strongly the patient's immune system answers the cells.
* **Baseline.** Severity drives bilirubin, albumin, INR, creatinine, sodium, ascites and
  encephalopathy grades, platelets and prothrombin activity (PTA); ALT and AST are
  independent of it. About 30% of patients are reported in SI units. Patients are kept
  only if the Child-Pugh score of their day-0 labs *as written* (rounded, in their units,
  read back the way the study reader converts them) is 7-12, the trial's eligibility.
  Sex (25% female), age (18-75) and etiology (mostly hepatitis B; PBC uses the
  cholestatic bilirubin bands).
* **Response.** For each endpoint ``e`` (Child-Pugh fall >= 1, MELD fall >= 1, albumin
  rise >= 0.1 g/dL) the probability of the drawn label is
  ``logit p_e = a_e + b_e log D + r_e R + g_e z + h_e z log D - k_e s + l_e u``, with
  ``D`` the cumulative dose in 10^8 cells and ``R`` repeated dosing. The three labels
  are drawn independently given the traits: they go together through the shared traits
  (mostly ``u``), never through each other.
* **MX1+ monocytes** fall after each infusion by ``amp x effect``, with the immune effect
  ``exp(-((t - 7) / 3.5)^2)`` at ``t`` days after an infusion (peak on day 7, gone by
  day 14, as the trial summary reports) and
  ``amp = 0.30 + 0.10 u + 0.06 log(dose per infusion / 10^8) + N(0, 0.03)``: more
  responsive patients dip more. The dip is never set from a label, so "MX1+ change
  predicts response" is true in these cohorts only as far as ``u`` links the two.
  Fractions are measured with noise (sd 0.012) on days 0, 7, 14, 28.
* **Day-28 labs realise the drawn labels.** MELD and albumin labels are realised first,
  from their own components (creatinine, bilirubin, INR; albumin), by bounded changes
  (bilirubin x0.5-1.2, INR x0.85-1.1, creatinine x0.6-1.3, albumin -0.4..+0.8 g/dL);
  the Child-Pugh label is then realised by moving ascites or encephalopathy by one grade,
  albumin within its label's direction, and bilirubin or INR across one band where the
  MELD label allows it. Every score is computed on the values as written and read back,
  by :mod:`msc_response.scores`, and checked: a label that was meant to be realised and
  is not is a bug, and raises.
* **When a label cannot be realised.** A MELD fall is impossible at its floor (MELD 6),
  and a Child-Pugh fall (or its absence) can be impossible given the other two labels
  (e.g. no ascites nor encephalopathy, bilirubin and INR in their best band, and an
  albumin that must not rise). Those cases are decided by baseline labs and the other
  labels only, so the simulator knows them in advance: ``p_*`` in ``truth.csv`` is the
  probability of the *realised* label given everything the simulator knows (baseline
  labs, traits, regimen), summed over the other labels' draws. The oracle AUROC
  (``p_*`` on realised labels) is therefore a true ceiling: no model of the written data
  can beat it except by chance. ``drawn_*`` keeps the draws.
* **Lab course.** Between baseline and day 28 the labs move with the cumulative immune
  effect of the infusions given so far (its integral up to that day over its integral up
  to day 28): single-dose patients change mostly by day 14, weekly x3 patients keep
  improving to day 28. Grades switch once that fraction passes a patient's threshold.
  Visits other than day 28 carry measurement noise.
* **Calibration targets** (the published rates,
  :data:`~msc_response.simulator.cohort.CALIBRATION_TARGETS`; the
  intercepts were fitted on 100,000 patients by ``benchmarks/calibrate_simulator.py``
  and a slow test checks them on labels computed from the simulated labs): Child-Pugh
  improvement 53.3% pooled over the single-dose arms and 88.9% in the repeated-dose
  group; MELD improvement 44.4% and albumin rise 88.9% in the repeated-dose group.
* **Trial layout** (:data:`~msc_response.domain.TRIAL_ARMS`): phase Ia 4 x 6 single
  doses; phase Ib 9 patients with three weekly infusions, 3 at 1.0 and 6 at 2.0 x 10^8
  cells (an assumption: :data:`~msc_response.simulator.cohort.IB_SPLIT_REASON`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, expit

from .. import scores, units

SIMULATED_NOTE = "SIMULATED data: generated by msc_response.simulator, not from any real patient."

#: Visit days: screening, baseline, then on treatment.
VISITS = (-7, 0, 3, 7, 14, 21, 28)
BASELINE_VISITS = (-7, 0)
CELL_VISITS = (0, 7, 14, 28)
FOLLOW_UP_DAY = 28

ENDPOINTS = ("child_pugh", "meld", "albumin")

#: Response model coefficients per endpoint (see the module docstring): ``u`` is the
#: responsiveness coefficient ``l_e``. The intercepts ``a`` and the child_pugh ``r`` were
#: calibrated on 100,000 patients (benchmarks/calibrate_simulator.py).
RESPONSE_COEF: dict[str, dict[str, float]] = {
    "child_pugh": {"a": 0.077, "b": 0.55, "r": 1.7, "g": 0.7, "h": 0.35, "k": 0.25, "u": 1.0},
    "meld": {"a": -1.211, "b": 0.30, "r": 0.35, "g": 0.5, "h": 0.2, "k": 0.10, "u": 0.8},
    "albumin": {"a": 0.79, "b": 0.55, "r": 0.70, "g": 0.4, "h": 0.2, "k": 0.10, "u": 0.8},
}

#: The latent traits, as ``simulation.json`` describes them.
LATENT_TRAITS = {
    "severity": "s ~ N(0, 1): drives the baseline labs and the MX1+ fraction",
    "inflammation": "logit of the true MX1+ fraction = -1.4 + 0.45 s + 0.55 N(0, 1); z = its standardised value",
    "responsiveness": "u ~ N(0, 1), independent of s and z: drives every response and the MX1+ dip",
}
MX1_LOGIT = {"intercept": -1.4, "severity": 0.45, "noise_sd": 0.55}
MX1_LOGIT_SD = float(np.hypot(MX1_LOGIT["severity"], MX1_LOGIT["noise_sd"]))
#: Size of the MX1+ dip at the immune effect's peak, as a fraction of the patient's level.
MX1_DIP = {"intercept": 0.30, "responsiveness": 0.10, "log_dose_per_infusion": 0.06,
           "noise_sd": 0.03, "min": 0.02, "max": 0.8}  # fmt: skip
MX1_MEASUREMENT_SD = 0.012
#: The immune effect of one infusion (trial summary: peaks about day 7, fades by day 14).
EFFECT_PEAK_DAY, EFFECT_WIDTH_DAYS = 7.0, 3.5

#: Measurement noise (coefficient of variation) of visits other than day 0 and day 28.
VISIT_CV = {"bilirubin": 0.04, "albumin": 0.02, "inr": 0.02, "creatinine": 0.04,
            "sodium": 0.005, "platelets": 0.05, "alt": 0.08, "ast": 0.08, "pta": 0.03}  # fmt: skip

ETIOLOGIES = ("HBV", "alcohol", "HCV", "autoimmune", "PBC", "other")
ETIOLOGY_P = (0.70, 0.12, 0.07, 0.04, 0.03, 0.04)
CHOLESTATIC = frozenset({"PBC"})
SI_SHARE = 0.3

LAB_TESTS = ("bilirubin", "albumin", "inr", "creatinine", "sodium", "ascites", "encephalopathy", "dialysis",
             "platelets", "alt", "ast", "pta")  # fmt: skip
GRADES = ("ascites", "encephalopathy", "dialysis")
#: Decimals written in the canonical unit; and the SI unit with its decimals.
DECIMALS = {"bilirubin": 2, "albumin": 1, "inr": 2, "creatinine": 2, "sodium": 0, "ascites": 0,
            "encephalopathy": 0, "dialysis": 0, "platelets": 0, "alt": 0, "ast": 0, "pta": 0}  # fmt: skip
SI = {"bilirubin": ("umol/L", 1), "albumin": ("g/L", 0), "creatinine": ("umol/L", 0)}
OTHER_UNITS = {"platelets": "10^9/L", "alt": "U/L", "ast": "U/L", "pta": "%"}
WRITTEN_UNIT = {t: units.CANONICAL_UNITS.get(t) or OTHER_UNITS[t] for t in LAB_TESTS}
UNIT_CATEGORIES = list(dict.fromkeys([*WRITTEN_UNIT.values(), *(u for u, _ in SI.values())]))


# ----------------------------------------------------------------------------------------
# written values: what a site writes and what the study reader makes of it


def written_values(test: str, canonical, si) -> np.ndarray:
    """The numbers written for ``canonical`` values (in the SI unit where ``si``)."""
    out = np.round(np.asarray(canonical, dtype=float), DECIMALS[test])
    if test in SI:
        unit, decimals = SI[test]
        as_si = units.convert(np.asarray(canonical, dtype=float), test, WRITTEN_UNIT[test], unit)
        out = np.where(si, np.round(as_si, decimals), out)
    return out


def read_back(test: str, written, si) -> np.ndarray:
    """Canonical values as the study reader computes them (written value x unit factor)."""
    written = np.asarray(written, dtype=float)
    if test not in SI:
        return written
    return np.where(si, written * units.factor_to_canonical(test, SI[test][0]), written)


def quantize(test: str, canonical, si) -> np.ndarray:
    """The canonical value the pipeline reads back after writing at the site's precision."""
    return read_back(test, written_values(test, canonical, si), si)


# ----------------------------------------------------------------------------------------
# pieces of the generative model (pure functions of arrays and a Generator)


def immune_effect(days_after) -> np.ndarray:
    """The immune effect of one infusion, ``days_after`` it (1 at the day-7 peak)."""
    x = np.asarray(days_after, dtype=float)
    return np.where(x >= 0, np.exp(-(((x - EFFECT_PEAK_DAY) / EFFECT_WIDTH_DAYS) ** 2)), 0.0)


def infusion_days(n_infusions: np.ndarray, interval_days: np.ndarray):
    """For the k-th infusion of every patient: whether it is given, and on which day."""
    for k in range(int(n_infusions.max())):
        yield k < n_infusions, k * interval_days


def accrued_effect(day: float, n_infusions, interval_days) -> np.ndarray:
    """Fraction of the day-28 cumulative immune effect reached by ``day``.

    The integral of :func:`immune_effect` over every infusion given by ``day``, over the
    same integral up to day 28 (closed form, with erf).
    """
    n_inf, interval = np.asarray(n_infusions), np.asarray(interval_days, dtype=float)
    w = EFFECT_WIDTH_DAYS

    def integral(d):
        total = np.zeros(len(n_inf))
        for given, start in infusion_days(n_inf, interval):
            x = np.maximum(d - start, 0.0)
            part = (
                w
                * np.sqrt(np.pi)
                / 2
                * (erf((x - EFFECT_PEAK_DAY) / w) - erf(-EFFECT_PEAK_DAY / w))
            )
            total += np.where(given, part, 0.0)
        return total

    return integral(day) / integral(FOLLOW_UP_DAY)


def course_fraction(day: float, n_infusions, interval_days) -> np.ndarray:
    """Fraction of the day-28 change reached by ``day``: :func:`accrued_effect` for treated
    patients; without cells (standard care, ``n_infusions`` 0) the natural course moves
    evenly in time."""
    n_inf = np.asarray(n_infusions)
    treated = n_inf > 0
    out = np.full(len(n_inf), day / FOLLOW_UP_DAY, dtype=float)
    if treated.any():
        out[treated] = accrued_effect(day, n_inf[treated], np.asarray(interval_days)[treated])
    return out


def response_probabilities(
    log_dose, repeated, z, severity, responsiveness
) -> dict[str, np.ndarray]:
    """Probability of each endpoint's drawn label given the traits and the regimen."""
    out = {}
    for ep, c in RESPONSE_COEF.items():
        eta = (c["a"] + c["b"] * log_dose + c["r"] * repeated + c["g"] * z
               + c["h"] * z * log_dose - c["k"] * severity + c["u"] * responsiveness)  # fmt: skip
        out[ep] = expit(eta)
    return out


def _candidates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Baseline labs (canonical, not yet written) and traits of ``n`` candidate patients."""
    s = rng.standard_normal(n)
    e = rng.standard_normal((9, n))
    labs = {
        "bilirubin": np.exp(0.85 + 0.55 * s + 0.35 * e[0]).clip(0.2, 40),
        "albumin": (3.0 - 0.32 * s + 0.3 * e[1]).clip(1.8, 4.6),
        "inr": np.exp(0.36 + 0.13 * s + 0.08 * e[2]).clip(0.9, 4.0),
        "creatinine": np.exp(-0.05 + 0.15 * s + 0.3 * e[3]).clip(0.3, 6.0),
        "sodium": (136 - 2.0 * s + 3.0 * e[4]).clip(118, 148),
        "ascites": np.digitize(0.8 * s + 0.6 * e[5], [-0.55, 0.6]).astype(float),
        "encephalopathy": np.digitize(0.6 * s + 0.8 * e[6], [0.9, 1.9, 2.6]).astype(float),
        "dialysis": np.zeros(n),
        "platelets": np.exp(4.3 - 0.2 * s + 0.4 * e[7]).clip(15, 400),
        "alt": np.exp(3.5 + 0.5 * rng.standard_normal(n)).clip(5, 800),
        "ast": np.exp(3.8 + 0.5 * rng.standard_normal(n)).clip(8, 900),
    }
    labs["pta"] = (125 - 55 * (labs["inr"] - 1) + 5 * e[8]).clip(10, 130)
    inflammation = (MX1_LOGIT["intercept"] + MX1_LOGIT["severity"] * s
                    + MX1_LOGIT["noise_sd"] * rng.standard_normal(n))  # fmt: skip
    traits = {
        "severity": s,
        "inflammation": inflammation,
        "responsiveness": rng.standard_normal(n),
        "etiology": rng.choice(len(ETIOLOGIES), size=n, p=ETIOLOGY_P),
        "si": rng.random(n) < SI_SHARE,
    }
    return {**traits, **labs}


def child_pugh_of(labs: dict[str, np.ndarray], cholestatic: np.ndarray) -> np.ndarray:
    return scores.child_pugh(labs["bilirubin"], labs["albumin"], labs["inr"], labs["ascites"],
                             labs["encephalopathy"], cholestatic=cholestatic)  # fmt: skip


def meld_of(labs: dict[str, np.ndarray]) -> np.ndarray:
    return scores.meld(labs["bilirubin"], labs["inr"], labs["creatinine"], labs["dialysis"])


def eligible_baseline(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` patients whose written day-0 labs give Child-Pugh 7-12 (rejection sampling)."""
    pool: dict[str, list[np.ndarray]] = {}
    have = 0
    while have < n:
        cand = _candidates(rng, 2 * (n - have) + 16)
        for t in LAB_TESTS:
            cand[t] = quantize(t, cand[t], cand["si"])
        cholestatic = np.isin(np.asarray(ETIOLOGIES)[cand["etiology"]], list(CHOLESTATIC))
        cp = child_pugh_of(cand, cholestatic)
        keep = np.flatnonzero((cp >= 7) & (cp <= 12))[: n - have]
        for k, v in cand.items():
            pool.setdefault(k, []).append(v[keep])
        have += len(keep)
    return {k: np.concatenate(v) for k, v in pool.items()}


def other_day28_labs(rng, base, fu, si, u) -> None:
    """Day-28 labs outside the scores: drift; PTA follows INR; platelets and transaminases
    improve a little with responsiveness (never with a label)."""
    n = len(si)
    z = rng.standard_normal((5, n))
    fu["platelets"] = quantize("platelets", base["platelets"] * np.exp(0.03 * u + 0.05 * z[0]), si)
    fu["alt"] = quantize("alt", base["alt"] * np.exp(-0.05 * u + 0.1 * z[1]), si)
    fu["ast"] = quantize("ast", base["ast"] * np.exp(-0.05 * u + 0.1 * z[2]), si)
    fu["sodium"] = quantize("sodium", base["sodium"] + 1.5 * z[3], si)
    pta = base["pta"] - 55 * (fu["inr"] - base["inr"]) + 2 * z[4]
    fu["pta"] = quantize("pta", pta.clip(10, 130), si)


def visit_labs(rng, base, fu, si, weight, threshold) -> dict[str, np.ndarray]:
    """Labs on a visit that has reached ``weight`` of the day-28 change, with noise."""
    out = {}
    for t in LAB_TESTS:
        if t in GRADES:
            out[t] = np.where(weight >= threshold, fu[t], base[t])
        else:
            noise = np.exp(VISIT_CV[t] * rng.standard_normal(len(si)))
            out[t] = quantize(t, (base[t] + weight * (fu[t] - base[t])) * noise, si)
    return out


def mx1_course(rng, f0, amp, n_inf, interval, days) -> dict[int, np.ndarray]:
    """Measured MX1+ fraction per day: dips after each infusion (largest 7 days after it)."""
    n = len(f0)
    out = {}
    for d in days:
        effect = np.zeros(n)
        for given, start in infusion_days(n_inf, interval):
            effect += np.where(given & (d > 0), immune_effect(d - start), 0.0)
        frac = f0 * (1 - amp * np.minimum(effect, 1.3))
        out[d] = np.round((frac + rng.normal(0, MX1_MEASUREMENT_SD, n)).clip(0.001, 0.999), 4)
    return out
