"""Liver disease severity scores as pure, vectorised functions of columns.

Inputs are array-likes (numpy arrays, pandas Series or scalars) in canonical units:
bilirubin and creatinine in mg/dL, albumin in g/dL, sodium in mmol/L. A missing
(NaN) input gives a missing score for that row only. Conventions follow
``shared/docs/domain.md``: boundary values fall in the middle band, rounding is half
up (never Python's half-to-even ``round``), MELD-type scores lie in 6-40.

References
----------
Pugh RNH, Murray-Lyon IM, Dawson JL, et al. Transection of the oesophagus for
bleeding oesophageal varices. Br J Surg 1973;60:646-9.
Kamath PS, Wiesner RH, Malinchoc M, et al. A model to predict survival in patients
with end-stage liver disease. Hepatology 2001;33:464-70 (MELD; OPTN policy before 2016).
Kim WR, Biggins SW, Kremers WK, et al. Hyponatremia and mortality among patients on
the liver-transplant waiting list. N Engl J Med 2008;359:1018-26 (MELD-Na; OPTN 2016).
Kim WR, Mannalithara A, Heimbach JK, et al. MELD 3.0: the Model for End-Stage Liver
Disease updated for the modern era. Gastroenterology 2021;161:1887-95.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MELD_MIN, MELD_MAX = 6, 40

# Guards round-half-up against binary noise such as 19.499999999999996 for 19.5.
_ROUNDING_EPS = 1e-9


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def round_half_up(x, decimals: int = 0) -> np.ndarray:
    """Round half away from zero for positive values (2.5 -> 3, 0.25 -> 0.3 at one decimal).

    Python's ``round`` and ``numpy.round`` round half to even, which the scoring
    conventions forbid.
    """
    scale = 10.0**decimals
    return np.floor(_arr(x) * scale + 0.5 + _ROUNDING_EPS) / scale


def _bands(x: np.ndarray, low: float, high: float, *, higher_is_worse: bool = True) -> np.ndarray:
    """Points 1/2/3 with both boundaries inside the middle band; NaN stays NaN."""
    if higher_is_worse:
        pts = np.where(x < low, 1.0, np.where(x <= high, 2.0, 3.0))
    else:  # e.g. albumin: lower is worse, ``low`` < ``high``
        pts = np.where(x > high, 1.0, np.where(x >= low, 2.0, 3.0))
    return np.where(np.isnan(x), np.nan, pts)


def bilirubin_points(bilirubin, cholestatic=False) -> np.ndarray:
    """Child-Pugh points for bilirubin (mg/dL): <2, 2-3, >3; PBC/PSC variant <4, 4-10, >10.

    ``cholestatic`` may be a boolean array marking rows with PBC or PSC.
    """
    b = _arr(bilirubin)
    chol = np.broadcast_to(np.asarray(cholestatic, dtype=bool), b.shape)
    return np.where(chol, _bands(b, 4.0, 10.0), _bands(b, 2.0, 3.0))


def albumin_points(albumin) -> np.ndarray:
    """Child-Pugh points for albumin (g/dL): >3.5, 2.8-3.5, <2.8."""
    return _bands(_arr(albumin), 2.8, 3.5, higher_is_worse=False)


def inr_points(inr) -> np.ndarray:
    """Child-Pugh points for INR: <1.7, 1.7-2.3, >2.3."""
    return _bands(_arr(inr), 1.7, 2.3)


def pt_points(pt_seconds_over_control) -> np.ndarray:
    """Child-Pugh points for prothrombin time prolongation (s over control): <4, 4-6, >6."""
    return _bands(_arr(pt_seconds_over_control), 4.0, 6.0)


def ascites_points(ascites_grade) -> np.ndarray:
    """Child-Pugh points for ascites grade 0 (none), 1 (mild/controlled), 2 (moderate-severe)."""
    g = _arr(ascites_grade)
    pts = np.where(g <= 0, 1.0, np.where(g <= 1, 2.0, 3.0))
    return np.where(np.isnan(g), np.nan, pts)


def encephalopathy_points(west_haven_grade) -> np.ndarray:
    """Child-Pugh points for hepatic encephalopathy, West Haven grade 0, 1-2, 3-4."""
    g = _arr(west_haven_grade)
    pts = np.where(g <= 0, 1.0, np.where(g <= 2, 2.0, 3.0))
    return np.where(np.isnan(g), np.nan, pts)


def pt_replaces_inr(has_inr, has_pt, has_pt_control):
    """Where Child-Pugh's coagulation item comes from PT over control: INR missing, PT and control given.

    Works on booleans or boolean arrays: the one statement of the rule for the score, the
    endpoint checks and the record of assumptions.
    """
    return np.logical_not(has_inr) & np.asarray(has_pt) & np.asarray(has_pt_control)


#: The Child-Pugh items (coagulation: INR, or PT over control without INR).
CHILD_PUGH_ITEMS = ("bilirubin", "albumin", "coagulation", "ascites", "encephalopathy")


def child_pugh(
    bilirubin,
    albumin,
    inr,
    ascites,
    encephalopathy,
    *,
    pt=None,
    pt_control=None,
    cholestatic=False,
) -> np.ndarray:
    """Child-Turcotte-Pugh score (5-15).

    The coagulation item uses INR; where INR is missing and ``pt`` and ``pt_control``
    (seconds) are given, it uses the prothrombin time over control instead.

    Examples
    --------
    >>> float(child_pugh(3.2, 2.6, 2.0, 1, 1)[()])
    12.0
    """
    items = child_pugh_items(bilirubin, albumin, inr, ascites, encephalopathy, pt=pt,
                             pt_control=pt_control, cholestatic=cholestatic)  # fmt: skip
    return (
        items["bilirubin"]
        + items["albumin"]
        + items["coagulation"]
        + items["ascites"]
        + items["encephalopathy"]
    )


def child_pugh_items(
    bilirubin,
    albumin,
    inr,
    ascites,
    encephalopathy,
    *,
    pt=None,
    pt_control=None,
    cholestatic=False,
) -> dict[str, np.ndarray]:
    """The points of each Child-Pugh item (:data:`CHILD_PUGH_ITEMS`), as :func:`child_pugh` adds them."""
    coag = inr_points(inr)
    if pt is not None and pt_control is not None:
        use_pt = pt_replaces_inr(~np.isnan(coag), ~np.isnan(_arr(pt)), ~np.isnan(_arr(pt_control)))
        coag = np.where(use_pt, pt_points(_arr(pt) - _arr(pt_control)), coag)
    return {
        "bilirubin": bilirubin_points(bilirubin, cholestatic),
        "albumin": albumin_points(albumin),
        "coagulation": coag,
        "ascites": ascites_points(ascites),
        "encephalopathy": encephalopathy_points(encephalopathy),
    }


def child_pugh_class(score) -> np.ndarray:
    """Child-Pugh class: A (5-6), B (7-9), C (10-15); None where the score is missing."""
    s = _arr(score)
    cls = np.where(s <= 6, "A", np.where(s <= 9, "B", "C")).astype(object)
    cls[np.isnan(s)] = None
    return cls


def _meld_raw(bilirubin, inr, creatinine, dialysis) -> np.ndarray:
    cr = np.clip(_arr(creatinine), 1.0, 4.0)
    if dialysis is not None:
        d = _arr(dialysis)
        cr = np.where(d >= 1, 4.0, np.where(np.isnan(d), np.nan, cr))
    b = np.maximum(_arr(bilirubin), 1.0)
    i = np.maximum(_arr(inr), 1.0)
    meld_i = 0.957 * np.log(cr) + 0.378 * np.log(b) + 1.120 * np.log(i) + 0.643
    return round_half_up(meld_i, 1) * 10


def meld(bilirubin, inr, creatinine, dialysis=None) -> np.ndarray:
    """MELD score (OPTN, before 2016), 6-40.

    Bilirubin, INR and creatinine below 1.0 are set to 1.0; creatinine is capped at
    4.0 mg/dL and set to 4.0 with dialysis (``dialysis`` >= 1: twice in the past week or
    24 h of CVVHD). MELD(i) = 0.957 ln(Cr) + 0.378 ln(bili) + 1.120 ln(INR) + 0.643,
    rounded to one decimal, times 10.

    Examples
    --------
    >>> float(meld(4.2, 1.2, 1.9)[()])
    20.0
    """
    return np.clip(
        round_half_up(_meld_raw(bilirubin, inr, creatinine, dialysis)), MELD_MIN, MELD_MAX
    )


def meld_na(bilirubin, inr, creatinine, sodium, dialysis=None) -> np.ndarray:
    """MELD-Na (OPTN, January 2016), 6-40.

    Sodium is clamped to 125-137 mmol/L. If MELD > 11,
    MELD-Na = MELD + 1.32 (137 - Na) - 0.033 MELD (137 - Na), rounded to an integer.

    Examples
    --------
    >>> float(meld_na(3.0, 1.8, 2.0, 128)[()])
    29.0
    """
    m = meld(bilirubin, inr, creatinine, dialysis)
    na = np.clip(_arr(sodium), 125.0, 137.0)
    adjusted = m + 1.32 * (137 - na) - 0.033 * m * (137 - na)
    out = np.where(m > 11, round_half_up(adjusted), m)
    out = np.where(np.isnan(na), np.nan, out)
    return np.clip(out, MELD_MIN, MELD_MAX)


def meld3(bilirubin, inr, creatinine, sodium, albumin, female, dialysis=None) -> np.ndarray:
    """MELD 3.0 (Kim et al., Gastroenterology 2021), 6-40.

    Bilirubin, INR and creatinine floored at 1.0; creatinine capped at 3.0 (dialysis
    sets 3.0); sodium clamped to 125-137 mmol/L; albumin to 1.5-3.5 g/dL.
    ``female`` is 1/True for women, 0/False for men, NaN when unknown.

    Examples
    --------
    >>> float(meld3(2.5, 1.5, 1.2, 135, 3.0, female=True)[()])
    19.0
    """
    b = np.maximum(_arr(bilirubin), 1.0)
    i = np.maximum(_arr(inr), 1.0)
    cr = np.clip(_arr(creatinine), 1.0, 3.0)
    if dialysis is not None:
        d = _arr(dialysis)
        cr = np.where(d >= 1, 3.0, np.where(np.isnan(d), np.nan, cr))
    na = np.clip(_arr(sodium), 125.0, 137.0)
    alb = np.clip(_arr(albumin), 1.5, 3.5)
    fem = _arr(female)
    score = (
        1.33 * fem
        + 4.56 * np.log(b)
        + 0.82 * (137 - na)
        - 0.24 * (137 - na) * np.log(b)
        + 9.09 * np.log(i)
        + 11.14 * np.log(cr)
        + 1.85 * (3.5 - alb)
        - 1.83 * (3.5 - alb) * np.log(cr)
        + 6
    )
    return np.clip(round_half_up(score), MELD_MIN, MELD_MAX)


# ----------------------------------------------------------------------------------------
# the scores of a table (one row per visit)

#: The scores (whole points) this module computes, by their column names.
SCORES = ("child_pugh", "meld", "meld_na", "meld3")
#: Output columns of :func:`add_scores`.
SCORE_COLUMNS = ["child_pugh", "child_pugh_class", "meld", "meld_na", "meld3"]

CHOLESTATIC_ETIOLOGIES = frozenset({"pbc", "psc"})


def cholestatic_mask(etiology: pd.Series | None, index) -> np.ndarray:
    """True where the etiology is PBC or PSC (the Child-Pugh bilirubin variant applies)."""
    if etiology is None:
        return np.zeros(len(index), dtype=bool)
    cat = etiology.astype("category")  # string work once per distinct etiology, not per row
    names = pd.Index(cat.cat.categories.astype(str)).str.strip().str.lower()
    flags = np.append(names.isin(CHOLESTATIC_ETIOLOGIES), False)  # code -1 (missing): False
    return flags[cat.cat.codes.to_numpy()]


def add_scores(canonical: pd.DataFrame) -> pd.DataFrame:
    """Child-Pugh (score and class), MELD, MELD-Na and MELD 3.0 of every row.

    Parameters
    ----------
    canonical : DataFrame
        Columns ``bilirubin``, ``albumin``, ``inr``, ``creatinine``, ``sodium`` (canonical
        units), ``ascites``, ``encephalopathy``, ``dialysis``, optionally ``pt`` and
        ``pt_control`` (seconds), ``sex`` (F/M) and ``etiology`` (PBC/PSC use the
        cholestatic bilirubin bands).

    Returns
    -------
    DataFrame
        The columns of :data:`SCORE_COLUMNS`, on the index of ``canonical``.
    """
    c = canonical
    col = lambda name: c[name].to_numpy(dtype=float) if name in c else np.full(len(c), np.nan)  # noqa: E731
    cp = child_pugh(
        col("bilirubin"), col("albumin"), col("inr"), col("ascites"), col("encephalopathy"),
        pt=col("pt"), pt_control=col("pt_control"),
        cholestatic=cholestatic_mask(c.get("etiology"), c.index),
    )  # fmt: skip
    dialysis = col("dialysis")
    if "sex" in c:
        sex = c["sex"].to_numpy()
        female = np.where(sex == "F", 1.0, np.where(sex == "M", 0.0, np.nan))
    else:
        female = np.full(len(c), np.nan)
    out = pd.DataFrame(index=c.index)
    out["child_pugh"] = cp
    out["child_pugh_class"] = child_pugh_class(cp)
    out["meld"] = meld(col("bilirubin"), col("inr"), col("creatinine"), dialysis)
    out["meld_na"] = meld_na(
        col("bilirubin"), col("inr"), col("creatinine"), col("sodium"), dialysis
    )
    out["meld3"] = meld3(
        col("bilirubin"),
        col("inr"),
        col("creatinine"),
        col("sodium"),
        col("albumin"),
        female,
        dialysis,
    )
    return out


def with_scores(raw: pd.DataFrame, canonical: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with the score columns of ``canonical`` appended (existing score columns replaced)."""
    scored = add_scores(canonical)
    for col in SCORES:  # whole points, missing allowed
        scored[col] = scored[col].astype("Int64")
    return pd.concat(
        [raw.drop(columns=[c for c in scored.columns if c in raw.columns]), scored], axis=1
    )
