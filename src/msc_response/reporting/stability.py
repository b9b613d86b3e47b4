"""Stability of individual predictions at small n (Riley RD, Collins GS. Biom J 2023;65:e2200302).

Each bootstrap model (the whole model-building procedure refit on a bootstrap sample)
predicts every patient of the original data; the prediction instability plot sets those
predictions against the original model's, and the mean absolute prediction error (MAPE)
is, per patient, the mean over bootstrap models of ``|p_boot - p_original|``, then
averaged over patients. Numbers only: the plot is :func:`.figures.plot_instability`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Instability:
    """Per-patient spread of bootstrap predictions and the MAPE.

    ``patients``: one row per patient, ``original``, ``mape`` (its mean absolute
    prediction error), ``low``/``high`` (2.5th/97.5th percentiles of its bootstrap
    predictions). ``mape``: the mean of the patients' MAPE. ``mape_range``: the 2.5th and
    97.5th percentiles over bootstrap models of each model's mean absolute difference
    (how far one other model of the same procedure moves the predictions on average).
    """

    patients: pd.DataFrame
    mape: float
    mape_range: tuple[float, float]
    max_patient_mape: float
    n_models: int


def instability(original, bootstrap) -> Instability:
    """Instability of ``original`` predictions (n) across ``bootstrap`` predictions (B x n).

    Examples
    --------
    >>> s = instability([0.2, 0.6], [[0.3, 0.6], [0.1, 0.2]])
    >>> round(s.mape, 6), s.patients["mape"].round(6).tolist()
    (0.15, [0.1, 0.2])
    """
    p = np.asarray(original, dtype=float)
    boot = np.atleast_2d(np.asarray(bootstrap, dtype=float))
    if boot.shape[1] != len(p):
        raise ValueError(
            f"bootstrap: expected {len(p)} columns (one per patient), got {boot.shape[1]}"
        )
    diff = np.abs(boot - p[None, :])
    per_patient = diff.mean(axis=0)
    per_model = diff.mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    table = pd.DataFrame({"original": p, "mape": per_patient, "low": lo, "high": hi})
    r_lo, r_hi = np.percentile(per_model, [2.5, 97.5])
    return Instability(table, float(per_patient.mean()), (float(r_lo), float(r_hi)),
                       float(per_patient.max()), boot.shape[0])  # fmt: skip
