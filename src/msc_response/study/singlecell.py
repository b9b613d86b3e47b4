"""MX1+ monocyte fractions from single-cell data (AnnData), in the ``cells`` form.

Shi et al. (Signal Transduct Target Ther 2025;10:238) found MX1+ monocytes, an
interferon-stimulated monocyte state, abnormally active in decompensated cirrhosis
and re-programmed by MSC. Per patient and day, the fraction of monocytes whose MX1
expression exceeds a threshold is the candidate biomarker. Only ``anndata`` is used:
no single-cell toolkit is needed for a thresholded count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config import SingleCell
from ..errors import DataError, Problem

POPULATION = "MX1+ monocytes"
PARENT = "monocytes"


def mx1_monocyte_fractions(path: str | Path, settings=None) -> pd.DataFrame:
    """Per (patient, day): the fraction of monocytes with MX1 expression above a threshold.

    Parameters
    ----------
    path : path to ``.h5ad``
        One observation per cell; ``obs`` holds patient, day and cell type.
    settings : :class:`~msc_response.config.SingleCell`, optional
        Gene, threshold, ``obs`` keys, the labels that count as monocytes, the layer.

    Returns
    -------
    DataFrame
        ``patient_id``, ``day``, ``population`` ("MX1+ monocytes"), ``parent``
        ("monocytes"), ``fraction``, ``n_parent`` (monocytes counted).
    """
    import anndata

    settings = settings or SingleCell()
    path = Path(path)
    try:
        adata = anndata.read_h5ad(path, backed="r")
    except (OSError, ValueError, KeyError) as err:
        raise DataError([Problem(path.name, None, None, f"cannot read AnnData: {err}")]) from err
    try:
        obs = adata.obs
        keys = (settings.patient_key, settings.day_key, settings.cell_type_key)
        problems = [Problem(path.name, None, f"obs[{k!r}]", "required obs column is missing") for k in keys
                    if k not in obs.columns]  # fmt: skip
        if settings.gene not in adata.var_names:
            problems.append(
                Problem(path.name, None, "var_names", f"gene {settings.gene!r} is not in var_names")
            )
        if problems:
            raise DataError(problems)
        is_mono = obs[settings.cell_type_key].astype(str).isin(settings.monocyte_types).to_numpy()
        gene_idx = int(np.flatnonzero(adata.var_names == settings.gene)[0])
        matrix = adata.layers[settings.layer] if settings.layer else adata.X
        column = matrix[:, gene_idx]
        expr = np.asarray(column.toarray() if hasattr(column, "toarray") else column).ravel()
        frame = pd.DataFrame(
            {
                "patient_id": obs[settings.patient_key].astype(str).to_numpy()[is_mono],
                "day": pd.to_numeric(obs[settings.day_key], errors="coerce").to_numpy()[is_mono],
                "positive": expr[is_mono] > settings.threshold,
            }
        )
    finally:
        if adata.isbacked:
            adata.file.close()
    if frame["day"].isna().any():
        raise DataError(
            [
                Problem(
                    path.name, None, f"obs[{settings.day_key!r}]", "day is missing or not a number"
                )
            ]
        )
    grouped = (
        frame.groupby(["patient_id", "day"], sort=True)["positive"]
        .agg(["mean", "size"])
        .reset_index()
    )
    return pd.DataFrame(
        {
            "patient_id": grouped["patient_id"],
            "day": grouped["day"].astype(np.int64),
            "population": POPULATION,
            "parent": PARENT,
            "fraction": grouped["mean"].astype(float),
            "n_parent": grouped["size"].astype(np.int64),
        }
    )
