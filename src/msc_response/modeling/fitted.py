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

MODEL_FILES = {"lightgbm": "model.lgb.txt", "logistic": "model.skops"}


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

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of response for a float matrix whose columns are ``feature_columns``.

        LightGBM runs on one thread: batch scoring puts one worker process on each core.
        """
        if self.kind == "lightgbm":
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

    def contributions(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the log-odds and the base value of each row.

        LightGBM: the booster's native TreeSHAP values (``pred_contrib``). Logistic
        regression: coefficient x centred (imputed, standardised) value; the base is the
        intercept. Either way base + sum of contributions = logit(probability). With a
        recalibration, contributions are multiplied by its slope and the base becomes
        intercept + slope x base, so the sum is still the (recalibrated) log-odds.
        """
        if self.kind == "lightgbm":
            out = self.estimator.predict(
                self.matrix(X).to_numpy(), pred_contrib=True, num_threads=1
            )
            contrib, base = out[:, :-1], out[:, -1]
        else:
            pipe = self.estimator
            z = pipe[:-1].transform(self.matrix(X))
            lr = pipe[-1]
            contrib, base = (
                np.asarray(z) * lr.coef_.ravel(),
                np.full(len(X), float(lr.intercept_[0])),
            )
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
        """Read a model written by :meth:`save` (skops trusts scikit-learn and numpy types only),
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
        foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
        if foreign:
            raise ValueError(
                f"refusing to load {str(path)!r}: it holds types outside scikit-learn/numpy: {foreign!r}"
            )
        return cls(kind, list(feature_columns), sio.load(path, trusted=untrusted), recalibration)


def write_spec(spec: dict, path: Path) -> Path:
    """The model's feature config and metadata, as JSON."""
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return path


@dataclass
class LoadedModel:
    """A registered response model with what scoring needs to know about it.

    ``fitted`` is loaded on first use: when worker processes score, the process that
    loaded the model never needs it.
    """

    uri: str
    name: str
    version: str
    spec: dict
    model_file: str

    @functools.cached_property
    def fitted(self) -> FittedModel:
        return FittedModel.load(self.spec, self.model_file)

    @property
    def feature_columns(self) -> list[str]:
        return list(self.spec["feature_columns"])

    @property
    def feature_spec(self) -> list[dict]:
        """The spec of the model's own inputs (kind, source test or population, unit)."""
        used = set(self.spec["feature_columns"])
        return [f for f in self.spec.get("feature_spec", []) if f["name"] in used]

    @property
    def threshold(self) -> float:
        return float(self.spec["threshold"])
