"""Feature builders: validated tables to one feature table per patient.

:func:`add_scores` computes the liver scores of a wide table whose score inputs are in
canonical units; the study-level builder (:func:`build_features`) picks baseline and
follow-up values from long-format labs and calls it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import scores

#: Output columns of :func:`add_scores`.
SCORE_COLUMNS = ["child_pugh", "child_pugh_class", "meld", "meld_na", "meld3"]

CHOLESTATIC_ETIOLOGIES = frozenset({"pbc", "psc"})


def cholestatic_mask(etiology: pd.Series | None, index) -> np.ndarray:
    """True where the etiology is PBC or PSC (the Child-Pugh bilirubin variant applies)."""
    if etiology is None:
        return np.zeros(len(index), dtype=bool)
    return etiology.astype(str).str.strip().str.lower().isin(CHOLESTATIC_ETIOLOGIES).to_numpy()


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
    cp = scores.child_pugh(
        col("bilirubin"), col("albumin"), col("inr"), col("ascites"), col("encephalopathy"),
        pt=col("pt"), pt_control=col("pt_control"),
        cholestatic=cholestatic_mask(c.get("etiology"), c.index),
    )  # fmt: skip
    dialysis = col("dialysis")
    female = (
        c["sex"].map({"F": 1.0, "M": 0.0}).to_numpy(dtype=float)
        if "sex" in c
        else np.full(len(c), np.nan)
    )
    out = pd.DataFrame(index=c.index)
    out["child_pugh"] = cp
    out["child_pugh_class"] = scores.child_pugh_class(cp)
    out["meld"] = scores.meld(col("bilirubin"), col("inr"), col("creatinine"), dialysis)
    out["meld_na"] = scores.meld_na(
        col("bilirubin"), col("inr"), col("creatinine"), col("sodium"), dialysis
    )
    out["meld3"] = scores.meld3(
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
    for col in ("child_pugh", "meld", "meld_na", "meld3"):  # whole points, missing allowed
        scored[col] = scored[col].astype("Int64")
    return pd.concat(
        [raw.drop(columns=[c for c in scored.columns if c in raw.columns]), scored], axis=1
    )
