"""Prediction in memory: a study (or its features) and a model to probabilities, explained.

Features are built by the same :func:`~msc_response.features.features_from_study` code
and the same experiment config that were stored with the model. Bad rows reject their
patient (see :mod:`msc_response.study.policy`); every patient of the input is either
predicted or rejected with a reason. The batch job (:mod:`msc_response.pipelines.score.job`)
runs the same :func:`predict_features` on each chunk of a study.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..domain import REGIMEN_FEATURES, arm_regimens
from ..errors import ConfigError, DataError, Problem
from ..features import FeatureSet, features_from_study, slug
from ..study import Study, load_study
from .explain import top_contributions
from .fitted import FittedModel, LoadedModel
from .metrics import predicted_responder

ASSOCIATION_NOTE = (
    "probability_under_* columns are model associations under each trial regimen, not causal effects: "
    "the model learned from who was given what, not from randomised comparisons"
)


@dataclass
class Predictions:
    """What :func:`predict` returns.

    Attributes
    ----------
    table : DataFrame
        ``patient_id``, ``probability``, ``predicted_response`` (at the model's threshold);
        with ``explain=K``, ``feature_i``, ``value_i``, ``contribution_i`` (log-odds) for the
        K largest contributions; with ``regimens``, ``probability_under_<arm>``.
    rejected : DataFrame
        ``patient_id``, ``reason``, ``category`` of every patient not predicted.
    features : FeatureSet
        The features the model read (and the row problems of the study).
    """

    table: pd.DataFrame
    rejected: pd.DataFrame
    features: FeatureSet


def check_regimens(model: LoadedModel) -> None:
    if not set(REGIMEN_FEATURES) & set(model.feature_columns):
        raise ConfigError("regimens: this model does not use the dosing regimen")


def predict(
    model: LoadedModel,
    data: Study | FeatureSet | str | os.PathLike,
    *,
    explain: int = 0,
    regimens: bool = False,
) -> Predictions:
    """Probabilities (and explanations, and what-if regimens) for every patient of ``data``.

    Parameters
    ----------
    model : LoadedModel
        From :func:`~msc_response.registry.load.load_model`.
    data : Study, FeatureSet or path
        A study or its directory (features are built with the model's config), or features
        already built.
    explain : int
        Also the ``explain`` largest contributions of each patient (0: none).
    regimens : bool
        Also the probability under each trial regimen (model associations, not effects).

    Raises
    ------
    DataError
        The study lacks a test or cell fraction the model needs.
    """
    if explain < 0:
        raise ConfigError(f"explain: expected a number >= 0, got {explain!r}")
    if regimens:
        check_regimens(model)
    if isinstance(data, (str, os.PathLike)):
        data = load_study(data, model.spec.config.singlecell)
    elif not isinstance(data, (Study, FeatureSet)):
        raise TypeError(
            f"data: expected a Study, a FeatureSet or a study directory, got {type(data).__name__!r}"
        )
    if isinstance(data, Study):
        fs = features_from_study(data, model.spec.config, labels=False, bad_rows="exclude")
        test = data.labs["test"]
        missing = missing_inputs(model.feature_spec, {str(c) for c in test.cat.categories},
                                 data.cells is not None and len(data.cells) > 0, data.files["labs"].name)  # fmt: skip
        if missing:
            raise DataError(missing)
    else:
        fs = data
    X = fs.table.reindex(columns=model.feature_columns).astype(float)
    table = predict_features(model.fitted, X, fs.table["patient_id"].to_numpy(), model.threshold,
                             explain=explain, regimens=regimens)  # fmt: skip
    return Predictions(table, fs.exclusions, fs)


def predict_features(
    fitted: FittedModel,
    X: pd.DataFrame,
    ids,
    threshold: float,
    *,
    explain: int = 0,
    regimens: bool = False,
) -> pd.DataFrame:
    """The prediction table of feature rows ``X`` (columns: the model's features) of patients ``ids``."""
    contrib = None
    if X.empty:
        p = np.zeros(0)
    elif explain:  # one pass gives both: probability = sigmoid(base + sum of contributions)
        from scipy.special import expit

        contrib, base = fitted.contributions(X, tables=True)  # LightGBM's values, looked up
        p = expit(base + contrib.sum(axis=1))
    else:
        p = fitted.predict_matrix(X.to_numpy(), tables=True)  # LightGBM's, looked up
    table = pd.DataFrame({
        "patient_id": ids,
        "probability": np.round(p, 6),
        "predicted_response": predicted_responder(p, threshold),
    })  # fmt: skip
    if regimens:
        for arm, values in arm_regimens():
            Xr = X.copy()
            for k, v in values.items():
                if k in Xr:
                    Xr[k] = v
            under = fitted.predict_matrix(Xr.to_numpy(), tables=True) if len(Xr) else np.zeros(0)
            table[f"probability_under_{slug(arm)}"] = np.round(under, 6)
    if explain and contrib is not None:
        table = pd.concat(
            [table, top_contributions(contrib, X, explain).reset_index(drop=True)], axis=1
        )
    return table


def missing_inputs(
    feature_spec: list[dict], tests_reported: set[str], has_cells: bool, labs_file: str
) -> list[Problem]:
    """The model's inputs a study can never give: a test it never reports, cell fractions it lacks."""
    problems = []
    if not has_cells:
        for f in feature_spec:
            if f["kind"].startswith("cells"):
                problems.append(Problem("cells", None, None,
                                        f"the model uses {f['name']!r} but the study has no cell fractions"))  # fmt: skip
    reported = {slug(t) for t in tests_reported}
    for f in feature_spec:
        if f["kind"] == "lab" and slug(f["source"]) not in reported:
            problems.append(Problem(labs_file, None, "test",
                                    f"the model needs test {f['source']!r}, which this study never reports"))  # fmt: skip
    return problems
