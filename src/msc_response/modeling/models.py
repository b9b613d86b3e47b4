"""Candidate models and baselines, each a scikit-learn estimator on a named set of features.

Candidates
    ``lightgbm``: gradient-boosted trees configured for tiny data (shallow trees, few
    leaves, small leaves allowed; the defaults cannot split a few dozen patients).
    ``logistic_l2``: L2-penalised logistic regression on standardised features, its
    penalty chosen by inner cross-validation (so outer validation around it is nested).
Baselines
    ``baseline_score``: logistic regression on the endpoint's baseline score alone.
    ``baseline_regimen``: logistic regression on the dosing regimen alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lightgbm import LGBMClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..config import ExperimentConfig
from ..domain import REGIMEN_FEATURES


@dataclass(frozen=True)
class ModelSpec:
    """A model to validate: its name, kind, role and input columns."""

    name: str
    kind: str  # "lightgbm" or "logistic"
    role: str  # "candidate" or "baseline"
    features: tuple[str, ...]


def endpoint_baseline_feature(config: ExperimentConfig) -> str:
    """The feature holding the endpoint's own baseline value."""
    return f"baseline_{config.endpoint.score}"


def model_specs(config: ExperimentConfig, feature_columns: list[str]) -> list[ModelSpec]:
    """Candidates from the config, then the baselines the data allow."""
    specs = [
        ModelSpec(
            c, "lightgbm" if c == "lightgbm" else "logistic", "candidate", tuple(feature_columns)
        )
        for c in config.model.candidates
    ]
    score_feature = endpoint_baseline_feature(config)
    if score_feature in feature_columns:
        specs.append(ModelSpec("baseline_score", "logistic", "baseline", (score_feature,)))
    regimen = tuple(f for f in REGIMEN_FEATURES if f in feature_columns)
    if regimen:
        specs.append(ModelSpec("baseline_regimen", "logistic", "baseline", regimen))
    return specs


def make_estimator(spec: ModelSpec, config: ExperimentConfig, seed: int, n_minority: int):
    """A fresh, unfitted estimator for ``spec`` (every random draw seeded by ``seed``)."""
    if spec.kind == "lightgbm":
        return LGBMClassifier(
            **config.model.lightgbm,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
            deterministic=True,
            force_row_wise=True,
        )
    impute = SimpleImputer(strategy="median", keep_empty_features=True)
    if spec.role == "candidate":
        inner = StratifiedKFold(
            n_splits=max(2, min(3, n_minority)), shuffle=True, random_state=seed
        )
        lr = LogisticRegressionCV(
            Cs=np.logspace(-3, 1, 9), l1_ratios=(0.0,), cv=inner, scoring="neg_log_loss",
            solver="newton-cholesky", max_iter=1000, use_legacy_attributes=False,
        )  # fmt: skip
    else:
        lr = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=1000)
    return Pipeline([("impute", impute), ("scale", StandardScaler()), ("model", lr)])


def predict_proba(estimator, X) -> np.ndarray:
    """Probability of response (class 1)."""
    return estimator.predict_proba(X)[:, 1]
