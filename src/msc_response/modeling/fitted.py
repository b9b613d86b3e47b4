"""A fitted response model: probability, contributions, and storage without pickle.

LightGBM models are stored as the booster's text model file; scikit-learn pipelines
through skops (which loads only the types it is told to trust).

A model may carry a logistic recalibration estimated on another cohort (``msc-response
validate --recalibrate``): ``logit(p') = intercept + slope x logit(p)``. It lives in the
model's ``model_spec.json``, beside the unchanged model file, and every prediction and
contribution goes through it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ExperimentConfig, config_from_dict
from . import gate, tree_tables

MODEL_FILES = {"lightgbm": "model.lgb.txt", "logistic": "model.skops"}

#: Type prefixes a stored scikit-learn pipeline may hold (our own: ``logistic_rcs``'s step).
TRUSTED_TYPES = ("sklearn.", "numpy.", "msc_response.modeling.splines.SplineExpansion")


@dataclass
class FittedModel:
    """A refit model and the columns it reads, in order."""

    kind: str
    feature_columns: list[str]
    estimator: object  # lightgbm.Booster or a fitted sklearn Pipeline
    recalibration: dict | None = None  # {"intercept": a, "slope": b}: logit(p') = a + b logit(p)

    @classmethod
    def from_estimator(cls, kind: str, feature_columns: list[str], estimator) -> FittedModel:
        return cls(
            kind, list(feature_columns), estimator.booster_ if kind == "lightgbm" else estimator
        )

    def matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.feature_columns].astype(float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of response for each row of ``X``."""
        return self.predict_matrix(self.matrix(X).to_numpy())

    def predict_matrix(self, matrix: np.ndarray, *, tables: bool = False) -> np.ndarray:
        """Probability of response for a float matrix whose columns are ``feature_columns``.

        LightGBM runs on one thread: batch scoring puts one worker process on each core.
        With ``tables``, LightGBM's probabilities bit for bit from its trees' outputs looked
        up per tree (:mod:`.tree_tables`, when the model's trees allow it).
        """
        lookup = (
            tree_tables.tables_for(self.estimator) if tables and self.kind == "lightgbm" else None
        )
        if lookup is not None:
            p = lookup.probabilities(matrix)
        elif self.kind == "lightgbm":
            p = self.estimator.predict(matrix, num_threads=1)
        else:
            p = self.estimator.predict_proba(pd.DataFrame(matrix, columns=self.feature_columns))[
                :, 1
            ]
        if self.recalibration is None:
            return p
        from scipy.special import expit, logit

        a, b = self.recalibration["intercept"], self.recalibration["slope"]
        return expit(a + b * logit(p))

    def contributions(
        self, X: pd.DataFrame, *, tables: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the log-odds and the base value of each row.

        LightGBM: the booster's native TreeSHAP values (``pred_contrib``); with ``tables``,
        the same values looked up per tree (:mod:`.tree_tables`: equal to ``pred_contrib``
        to about 1e-15, several times faster) when the model's trees allow it. Logistic
        regression: coefficient x centred (imputed, standardised) value; the base is the
        intercept. Either way base + sum of contributions = logit(probability). With a
        recalibration, contributions are multiplied by its slope and the base becomes
        intercept + slope x base, so the sum is still the (recalibrated) log-odds.
        """
        if self.kind == "lightgbm":
            lookup = tree_tables.tables_for(self.estimator) if tables else None
            matrix = self.matrix(X).to_numpy()
            if lookup is None:  # not asked for, or a tree the tables do not cover
                out = self.estimator.predict(matrix, pred_contrib=True, num_threads=1)
            else:
                out = lookup.contributions(matrix)
            contrib, base = out[:, :-1], out[:, -1]
        else:
            pipe = self.estimator
            z = pipe[:-1].transform(self.matrix(X))
            lr = pipe[-1]
            contrib, base = (
                np.asarray(z) * lr.coef_.ravel(),
                np.full(len(X), float(lr.intercept_[0])),
            )
            if "expand" in pipe.named_steps:  # spline terms of one feature add up to its share
                contrib = pipe.named_steps["expand"].per_feature(contrib)
        if self.recalibration is None:
            return contrib, base
        a, b = self.recalibration["intercept"], self.recalibration["slope"]
        return contrib * b, a + b * base

    def save(self, directory: Path) -> Path:
        """Write the model file into ``directory``; returns its path."""
        path = Path(directory) / MODEL_FILES[self.kind]
        if self.kind == "lightgbm":
            self.estimator.save_model(str(path))
        else:
            import skops.io as sio

            sio.dump(self.estimator, path)
        return path

    @classmethod
    def load(cls, spec: dict, path: str | Path) -> FittedModel:
        """Read a model written by :meth:`save` (skops trusts scikit-learn, numpy and this
        package's own spline step only),
        as its ``model_spec.json`` describes it: kind, feature columns and the recalibration, if any."""
        kind, feature_columns = spec["kind"], spec["feature_columns"]
        recalibration = spec.get("recalibration")
        if kind == "lightgbm":
            import lightgbm as lgb

            return cls(
                kind, list(feature_columns), lgb.Booster(model_file=str(path)), recalibration
            )
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_TYPES)]
        if foreign:
            raise ValueError(
                f"refusing to load {str(path)!r}: it holds types outside scikit-learn/numpy: {foreign!r}"
            )
        return cls(kind, list(feature_columns), sio.load(path, trusted=untrusted), recalibration)


def write_spec(spec: dict, path: Path) -> Path:
    """The model's feature config and metadata, as JSON."""
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True)
class StoredSpec:
    """A registered model's ``model_spec.json``, read once: the experiment config parsed and
    the facts scoring needs typed. ``raw`` is the JSON as stored (what :func:`write_spec` wrote);
    ``spec["key"]`` and ``spec.get("key")`` read it too.
    """

    raw: dict
    config: ExperimentConfig

    @classmethod
    def from_dict(cls, raw: dict) -> StoredSpec:
        return cls(raw, config_from_dict(raw["config"]))

    @property
    def kind(self) -> str:
        return self.raw["kind"]

    @property
    def model_name(self) -> str:
        """The candidate's name (its kind for models stored before names were)."""
        return self.raw.get("model_name", self.raw["kind"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.raw["feature_columns"])

    @property
    def threshold(self) -> float:
        return float(self.raw["threshold"])

    @property
    def lab_units(self) -> dict:
        return self.raw.get("lab_units", {})

    @property
    def trained_on_simulated_data(self) -> bool:
        return bool(self.raw.get("trained_on_simulated_data"))

    def __getitem__(self, key: str):
        return self.raw[key]

    def get(self, key: str, default=None):
        return self.raw.get(key, default)


@dataclass
class LoadedModel:
    """A registered response model with what scoring needs to know about it.

    ``spec`` may be given as the stored dict; it is parsed once, here. ``fitted`` is
    loaded on first use: when worker processes score, the process that loaded the model
    never needs it.
    """

    uri: str
    name: str
    version: str
    spec: StoredSpec
    model_file: str
    #: champion, candidate or exploratory (:func:`msc_response.modeling.gate.status_of`),
    #: from the version's aliases when the model was loaded
    status: str = "candidate"

    def __post_init__(self):
        if isinstance(self.spec, dict):
            self.spec = StoredSpec.from_dict(self.spec)

    @functools.cached_property
    def fitted(self) -> FittedModel:
        return FittedModel.load(self.spec.raw, self.model_file)

    @property
    def feature_columns(self) -> list[str]:
        return self.spec.feature_columns

    @property
    def feature_spec(self) -> list[dict]:
        """The spec of the model's own inputs (kind, source test or population, unit)."""
        used = set(self.spec.feature_columns)
        return [f for f in self.spec.get("feature_spec", []) if f["name"] in used]

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @property
    def trained_on_simulated_data(self) -> bool:
        return self.spec.trained_on_simulated_data

    @property
    def label(self) -> str:
        """How messages name it: ``models:/NAME/VERSION`` (or its URI when not registered)."""
        return f"models:/{self.name}/{self.version}" if self.version else self.uri

    def warning(self) -> str | None:
        """What a user of its predictions must be told (:func:`~.gate.status_warning`)."""
        return gate.status_warning(
            self.status, self.label, simulated=self.trained_on_simulated_data
        )
