"""Response labels: the change of an endpoint between baseline and follow-up.

A patient responds when the endpoint moves by at least ``min_change`` in the wanted
direction (Child-Pugh or MELD decreasing, albumin increasing), the way the phase Ia/Ib
trial reported its signals (Shi et al., Signal Transduct Target Ther 2025;10:238).
"""

from __future__ import annotations

import numpy as np


def endpoint_change(baseline, followup) -> np.ndarray:
    """Follow-up minus baseline (NaN where either is missing)."""
    return np.asarray(followup, dtype=float) - np.asarray(baseline, dtype=float)


def response(change, direction: str, min_change: float) -> np.ndarray:
    """1.0 for a response, 0.0 for none, NaN where the change is unknown.

    Parameters
    ----------
    change : array-like
        Follow-up minus baseline.
    direction : {"decrease", "increase"}
        The direction that counts as improvement.
    min_change : float
        Smallest improvement that counts (> 0), in the endpoint's units.

    Examples
    --------
    >>> response([-2, -1, 0, 1], "decrease", 1).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    if direction not in ("decrease", "increase"):
        raise ValueError(f"direction: expected 'decrease' or 'increase', got {direction!r}")
    if not min_change > 0:
        raise ValueError(f"min_change: expected a number > 0, got {min_change!r}")
    c = np.asarray(change, dtype=float)
    # a tiny tolerance so that 3.1 - 3.0 counts as a 0.1 g/dL rise despite binary noise
    improved = (-c if direction == "decrease" else c) >= min_change - 1e-9
    return np.where(np.isnan(c), np.nan, improved.astype(float))
