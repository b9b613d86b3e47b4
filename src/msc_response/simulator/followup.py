"""Day-28 labs that realise the drawn labels, and the probability of the realised labels.

The labels are drawn first (:mod:`~msc_response.simulator.model`); the day-28 labs are
then built so that the project's own scores of the values *as written* give exactly the
labels meant. MELD and albumin labels are realised from their own components; the
Child-Pugh label from ascites, encephalopathy, albumin within its label's direction, and
bilirubin or INR across one band where the MELD label allows it.

Whether a label can be realised depends only on the baseline and the other labels
(:func:`feasible`): a MELD fall is impossible at MELD 6; a Child-Pugh fall, or its
absence, can be impossible given the albumin and MELD labels. Since the drawn labels are
independent given the traits, :func:`realised_probabilities` gives the probability of the
*realised* label given everything the simulator knows: the oracle stays a ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import labels, scores
from .model import ENDPOINTS, LAB_TESTS, child_pugh_of, meld_of, quantize

#: How far a lab may move from baseline to day 28 (relative factors; albumin in 0.1 g/dL).
FACTORS = {"bilirubin": (0.5, 1.2), "inr": (0.85, 1.1), "creatinine": (0.6, 1.3)}
ALBUMIN_STEPS = (-4, 8)
#: Distance kept from a Child-Pugh band edge when a value is placed in a band (more than
#: half of the coarsest grid step written, 0.1 umol/L of bilirubin = 0.006 mg/dL).
BAND_MARGIN = 0.02
#: The components of MELD.
MELD_TESTS = ("bilirubin", "inr", "creatinine")
#: Band moves of (bilirubin, INR) for the Child-Pugh score, in order of preference.
PLANS = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1))
_PLAN_INDEX = np.array([PLANS.index((b, i)) for b in (-1, 0, 1) for i in (-1, 0, 1)])
_PLAN_POINTS = np.array([b + i for b, i in PLANS])


def _band_bounds(points, low_edge, high_edge):
    """Values of each Child-Pugh band (1, 2, 3), kept ``BAND_MARGIN`` away from the edges."""
    low = np.select(
        [points <= 1, points == 2], [0.0, low_edge + BAND_MARGIN], high_edge + BAND_MARGIN
    )
    high = np.select(
        [points <= 1, points == 2], [low_edge - BAND_MARGIN, high_edge - BAND_MARGIN], np.inf
    )
    return low, high


def _band_box(x0, points0, move, factors, low_edge, high_edge):
    """Lowest and highest value reachable within ``factors`` in band ``points0 + move``."""
    f_low, f_high = factors[0] * x0, factors[1] * x0
    low, high = _band_bounds(points0 + move, low_edge, high_edge)
    if move == 0:  # the box always holds the baseline value itself
        return np.minimum(x0, np.maximum(f_low, low)), np.maximum(x0, np.minimum(f_high, high))
    return np.maximum(f_low, low), np.minimum(f_high, high)


@dataclass
class LabMoves:
    """What the day-28 labs can do for each patient, from the baseline alone.

    For each (bilirubin, INR) band plan of :data:`PLANS`: whether it is reachable, the
    lowest and highest bilirubin, INR and creatinine it allows, and the MELD at those
    corners. For the components only Child-Pugh uses (ascites, encephalopathy) and for
    albumin, the range of point changes. All values are on the written grid.
    """

    meld0: np.ndarray
    reachable: np.ndarray  # (plans, n)
    box: dict[str, np.ndarray]  # test -> (plans, 2, n), or (2, n) for creatinine
    meld_low: np.ndarray  # (plans, n)
    meld_high: np.ndarray
    albumin_points: np.ndarray  # (steps, n): point change for each albumin step
    other_low: np.ndarray  # (2, n) by albumin label: sum of the free components' lowest change
    other_high: np.ndarray

    def consistent(self, meld_label) -> np.ndarray:
        """(plans, n): plans in which the MELD label can be realised."""
        realised = np.where(np.asarray(meld_label) == 1, self.meld_low <= self.meld0 - 1,
                            self.meld_high >= self.meld0)  # fmt: skip
        return self.reachable & realised

    def fits(self, consistent, albumin_label, target) -> np.ndarray:
        """(plans, n): consistent plans in which the other components can make up ``target``."""
        rest = target - _PLAN_POINTS[:, None]
        a = np.asarray(albumin_label, dtype=int)
        cols = np.arange(len(a))
        return consistent & (self.other_low[a, cols] <= rest) & (rest <= self.other_high[a, cols])


def lab_moves(base: dict[str, np.ndarray], si: np.ndarray, cholestatic: np.ndarray) -> LabMoves:
    """:class:`LabMoves` of every patient, from the baseline labs as written."""
    n = len(si)
    edges = {"bilirubin": (np.where(cholestatic, 4.0, 2.0), np.where(cholestatic, 10.0, 3.0)),
             "inr": (np.full(n, 1.7), np.full(n, 2.3))}  # fmt: skip
    points = {"bilirubin": scores.bilirubin_points(base["bilirubin"], cholestatic),
              "inr": scores.inr_points(base["inr"])}  # fmt: skip
    box = {t: np.empty((len(PLANS), 2, n)) for t in ("bilirubin", "inr")}
    reachable = np.ones((len(PLANS), n), dtype=bool)
    for p, plan in enumerate(PLANS):
        for t, move in zip(("bilirubin", "inr"), plan, strict=True):
            low, high = _band_box(base[t], points[t], move, FACTORS[t], *edges[t])
            target = points[t] + move
            reachable[p] &= (target >= 1) & (target <= 3) & (low <= high)
            box[t][p] = quantize(t, low, si), quantize(t, high, si)
    c = base["creatinine"]
    box["creatinine"] = np.stack([quantize("creatinine", f * c, si) for f in FACTORS["creatinine"]])

    def meld_at(corner):
        return scores.meld(box["bilirubin"][:, corner], box["inr"][:, corner],
                           box["creatinine"][corner], base["dialysis"])  # fmt: skip

    n_alb = np.rint(base["albumin"] * 10)
    alb0 = scores.albumin_points(base["albumin"])
    steps = np.arange(ALBUMIN_STEPS[0], ALBUMIN_STEPS[1] + 1)
    alb_points = np.stack([
        scores.albumin_points(quantize("albumin", (n_alb + k) / 10, si)) - alb0 for k in steps
    ])  # fmt: skip
    at = lambda k: alb_points[k - ALBUMIN_STEPS[0]]  # noqa: E731
    ascites, enceph = base["ascites"], scores.encephalopathy_points(base["encephalopathy"])
    free_low = -(ascites > 0).astype(int) - (enceph > 1)
    free_high = (ascites < 2).astype(int) + (enceph < 3)
    # albumin label 0: no rise (0 to -0.4 g/dL); label 1: a rise of 0.1 to 0.8 g/dL
    other_low = np.stack([free_low + at(0), free_low + at(ALBUMIN_STEPS[1])])
    other_high = np.stack([free_high + at(ALBUMIN_STEPS[0]), free_high + at(1)])
    return LabMoves(meld_of(base), reachable, box, meld_at(0), meld_at(1), alb_points,
                  other_low.astype(int), other_high.astype(int))  # fmt: skip


def feasible(moves: LabMoves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which labels can be realised: MELD fall; Child-Pugh fall and no fall per (albumin, MELD).

    Returns ``meld_fall`` (n,) and ``cp_fall``, ``cp_no_fall`` (2, 2, n) indexed by the
    albumin label and the realised MELD label.
    """
    n = moves.meld0.shape[0]
    consistent = [moves.consistent(np.full(n, m)) for m in (0, 1)]
    cp_fall = np.empty((2, 2, n), dtype=bool)
    cp_no_fall = np.empty((2, 2, n), dtype=bool)
    for a in (0, 1):
        for m in (0, 1):
            cp_fall[a, m] = (
                consistent[m] & (_PLAN_POINTS[:, None] + moves.other_low[a] <= -1)
            ).any(0)
            cp_no_fall[a, m] = (
                consistent[m] & (_PLAN_POINTS[:, None] + moves.other_high[a] >= 0)
            ).any(0)
    return consistent[1].any(0), cp_fall, cp_no_fall


def realised_probabilities(p: dict[str, np.ndarray], moves: LabMoves) -> dict[str, np.ndarray]:
    """Probability of each *realised* label given everything the simulator knows.

    The drawn labels are independent given the traits, and whether a label can be realised
    depends only on the baseline and the other labels (:func:`feasible`), so the Child-Pugh
    probability sums over the albumin and realised MELD labels.
    """
    meld_fall, cp_fall, cp_no_fall = feasible(moves)
    p_meld = p["meld"] * meld_fall
    p_cp = np.zeros_like(p["child_pugh"])
    for a, pa in ((0, 1 - p["albumin"]), (1, p["albumin"])):
        for m, pm in ((0, 1 - p_meld), (1, p_meld)):
            realised = p["child_pugh"] * cp_fall[a, m] + (1 - p["child_pugh"]) * ~cp_no_fall[a, m]
            p_cp += pa * pm * realised
    return {"child_pugh": p_cp, "meld": p_meld, "albumin": p["albumin"]}


def realised_labels(drawn: dict[str, np.ndarray], moves: LabMoves) -> dict[str, np.ndarray]:
    """The labels the day-28 labs will realise (the draws, unless impossible)."""
    meld_fall, cp_fall, cp_no_fall = feasible(moves)
    cols = np.arange(len(meld_fall))
    meld = drawn["meld"] * meld_fall
    a, m = drawn["albumin"].astype(int), meld.astype(int)
    cp = np.where(drawn["child_pugh"] == 1, cp_fall[a, m, cols], ~cp_no_fall[a, m, cols])
    return {"child_pugh": cp.astype(float), "meld": meld.astype(float), "albumin": drawn["albumin"]}


def day28_labs(rng, base, si, cholestatic, y, moves: LabMoves) -> dict[str, np.ndarray]:
    """Day-28 labs whose scores give exactly the labels ``y`` (which must be realisable).

    Each patient gets natural proposals first (a MELD responder's creatinine, bilirubin and
    INR fall by 10-35%, a non-responder's drift; albumin rises 0.1-0.6 g/dL or falls 0-0.3).
    The Child-Pugh change to reach is the proposals' own if it fits the label, else one
    point (two for 30% of responders; a one-point worsening for 15% of non-responders); a
    (bilirubin, INR) band plan that allows it is chosen (the proposals' own first), and the
    free components make up the rest.
    """
    n = len(si)
    cols = np.arange(n)
    yc, ym, ya = (y[e].astype(int) for e in ENDPOINTS)
    # every random number first, in a fixed order
    factor = {t: np.where(ym == 1, rng.uniform(lo, hi, n), rng.uniform(0.98, 1.05, n))
              for t, lo, hi in (("creatinine", 0.65, 0.9), ("bilirubin", 0.7, 0.92), ("inr", 0.9, 0.98))}  # fmt: skip
    alb_step = np.where(ya == 1, rng.integers(1, 7, n), -rng.integers(0, 4, n))
    r_target, r_revert = rng.random(n), rng.random(n)
    order = np.argsort(rng.random((3, n)), axis=0)  # order in which free components move

    proposal = {t: quantize(t, base[t] * factor[t], si) for t in MELD_TESTS}
    move_b = np.clip(scores.bilirubin_points(proposal["bilirubin"], cholestatic)
                     - scores.bilirubin_points(base["bilirubin"], cholestatic), -1, 1)  # fmt: skip
    move_i = np.clip(scores.inr_points(proposal["inr"]) - scores.inr_points(base["inr"]), -1, 1)
    natural = _PLAN_INDEX[((move_b + 1) * 3 + (move_i + 1)).astype(int)]
    alb_natural = moves.albumin_points[alb_step - ALBUMIN_STEPS[0], cols]

    consistent = moves.consistent(ym)
    proposed = _PLAN_POINTS[natural] + alb_natural
    preferred = np.where(yc == 1, np.where(r_target < 0.3, -2, -1), np.where(r_target < 0.15, 1, 0))
    first = np.where((yc == 1) == (proposed <= -1), proposed, preferred)
    unset = np.iinfo(np.int64).min
    target = np.full(n, unset)
    for candidate in (first, *[np.where(yc == 1, -k, k - 1) for k in range(1, 8)]):
        ok = (target == unset) & moves.fits(consistent, ya, candidate).any(0)
        target = np.where(ok, candidate, target)
    if (target == unset).any():
        raise RuntimeError("simulator bug: a Child-Pugh label meant to be realisable is not")
    fits = moves.fits(consistent, ya, target)
    plan = np.where(fits[natural, cols], natural, np.argmax(fits, axis=0))

    fu = {t: base[t].copy() for t in LAB_TESTS}
    fu.update(_meld_components(base, proposal, moves, plan, ym, r_revert))
    change = _free_components(base, moves, ya, target - _PLAN_POINTS[plan], alb_natural, order)
    fu["ascites"] = base["ascites"] + change["ascites"]
    e_points = scores.encephalopathy_points(base["encephalopathy"]) + change["encephalopathy"]
    e0 = base["encephalopathy"]
    fu["encephalopathy"] = np.select(
        [e_points == 1, e_points == 2],
        [0.0, np.where((e0 >= 1) & (e0 <= 2), e0, np.where(e0 < 1, 1.0, 2.0))],
        np.where(e0 >= 3, e0, 3.0),
    )
    # the albumin step with the wanted point change closest to the natural one
    steps = np.arange(ALBUMIN_STEPS[0], ALBUMIN_STEPS[1] + 1)[:, None]
    allowed = np.where(ya == 1, steps >= 1, steps <= 0) & (
        moves.albumin_points == change["albumin"]
    )
    step = steps[np.argmin(np.where(allowed, np.abs(steps - alb_step), 99), axis=0), 0]
    fu["albumin"] = quantize("albumin", (np.rint(base["albumin"] * 10) + step) / 10, si)
    _check_realised(base, fu, cholestatic, y)
    return fu


def _meld_components(base, proposal, moves: LabMoves, plan, ym, r_revert) -> dict[str, np.ndarray]:
    """Bilirubin, INR and creatinine inside the plan's box, realising the MELD label.

    The proposals where they realise it; else the box's corner that must (a responder's
    lowest, a non-responder's baseline or highest). A non-responder's MELD that rose
    without need goes back to baseline 90% of the time: none rose in the trial's
    repeated high-dose group.
    """
    cols = np.arange(len(plan))
    low = {t: moves.box[t][plan, 0, cols] for t in ("bilirubin", "inr")}
    high = {t: moves.box[t][plan, 1, cols] for t in ("bilirubin", "inr")}
    low["creatinine"], high["creatinine"] = moves.box["creatinine"]
    out = {t: np.clip(proposal[t], low[t], high[t]) for t in MELD_TESTS}

    def put(values, where):
        for t in MELD_TESTS:
            out[t] = np.where(where, values[t], out[t])

    m0 = moves.meld0
    put(low, (ym == 1) & (meld_of({**base, **out}) > m0 - 1))
    put(
        {t: np.clip(base[t], low[t], high[t]) for t in MELD_TESTS},
        (ym == 0) & (meld_of({**base, **out}) < m0),
    )
    put(high, (ym == 0) & (meld_of({**base, **out}) < m0))
    put(base, (ym == 0) & (plan == 0) & (meld_of({**base, **out}) > m0) & (r_revert < 0.9))
    return out


def _free_components(base, moves: LabMoves, ya, rest, alb_natural, order) -> dict[str, np.ndarray]:
    """Child-Pugh point changes of ascites, albumin and encephalopathy that add up to ``rest``.

    Albumin starts at its natural change; the components then move, each within its range
    (one grade; albumin within its label's direction), in a random order per patient.
    """
    n = len(rest)
    enceph0 = scores.encephalopathy_points(base["encephalopathy"])
    alb_low = np.where(ya == 1, moves.albumin_points[-1], 0)
    alb_high = np.where(
        ya == 1, moves.albumin_points[1 - ALBUMIN_STEPS[0]], moves.albumin_points[0]
    )
    ranges = {
        "ascites": (-(base["ascites"] > 0).astype(int), (base["ascites"] < 2).astype(int)),
        "albumin": (alb_low, alb_high),
        "encephalopathy": (-(enceph0 > 1).astype(int), (enceph0 < 3).astype(int)),
    }
    change = {
        "ascites": np.zeros(n),
        "albumin": alb_natural.astype(float),
        "encephalopathy": np.zeros(n),
    }
    gap = rest - sum(change.values())
    for j in range(3):
        for c, (name, (lo, hi)) in enumerate(ranges.items()):
            mine = order[j] == c
            new = np.where(mine, np.clip(change[name] + gap, lo, hi), change[name])
            gap = gap - (new - change[name])
            change[name] = new
    if (gap != 0).any():
        raise RuntimeError(
            "simulator bug: the free Child-Pugh components cannot make up the change"
        )
    return change


def _check_realised(base, fu, cholestatic, y) -> None:
    """The project's own scores of the written labs must give the labels meant: else a bug."""
    got = {
        "child_pugh": labels.response(child_pugh_of(fu, cholestatic) - child_pugh_of(base, cholestatic), "decrease", 1),
        "meld": labels.response(meld_of(fu) - meld_of(base), "decrease", 1),
        "albumin": labels.response(fu["albumin"] - base["albumin"], "increase", 0.1),
    }  # fmt: skip
    for ep in ENDPOINTS:
        wrong = int((got[ep] != y[ep]).sum())
        if wrong:
            raise RuntimeError(
                f"simulator bug: {wrong} day-28 {ep} label(s) differ from the ones meant"
            )
