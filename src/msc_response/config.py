"""The experiment configuration: safe YAML load, defaults, validation that names the key.

A config says which study to read, how baseline and follow-up values are picked, what
counts as a response, and how models are trained. It is stored with every model so
that scoring builds features exactly as training did. Every section validates itself
when it is made (``__post_init__``), so a config is valid however it is built: from
YAML, from a dict, or in code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .domain import STANDARD_CARE
from .errors import ConfigError
from .plausible import expected, is_plausible
from .scores import SCORES
from .units import KNOWN_TESTS

ENDPOINT_SCORES = (*SCORES, "albumin")
DIRECTIONS = ("decrease", "increase")
#: Every model that may be a candidate, and the default candidates (see modeling/models.py).
CANDIDATES = ("lightgbm", "logistic_l2", "logistic_rcs")
DEFAULT_CANDIDATES = ("lightgbm", "logistic_rcs")
#: The primary when the config names none: the first of these that is a candidate, else the
#: first candidate (docs/default-model.md: why ``logistic_rcs``, and its proof).
DEFAULT_PRIMARIES = ("logistic_rcs", "logistic_l2")

#: Names allowed for an experiment: the name is the MLflow experiment, the registered model
#: and a folder of the artifact store, so it must be a path segment that needs no quoting:
#: ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit (no ``/``,
#: ``:``, ``..``, spaces), within MLflow's length limits with room for ``-scoring`` beside it.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

#: LightGBM settings that can split a few dozen patients (the defaults, e.g.
#: ``min_child_samples=20``, cannot): shallow trees, few leaves, strong shrinkage.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 4,
    "max_depth": 2,
    "min_child_samples": 4,
    "min_data_in_bin": 1,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}


def _require(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: bad value {value!r}; expected {expected}")


def _require_text(obj, section: str, keys) -> None:
    """Each of ``keys`` of ``obj`` is a non-empty string (named ``section.key`` if not)."""
    for key in keys:
        value = getattr(obj, key)
        _require(
            isinstance(value, str) and value != "", f"{section}.{key}", value, "a non-empty string"
        )


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


@dataclass(frozen=True)
class Endpoint:
    """What counts as a response: a change of ``min_change`` in ``direction`` by ``followup_day``."""

    score: str = "child_pugh"
    direction: str = "decrease"
    min_change: float = 1.0
    followup_day: int = 28
    window_days: int = 7

    def __post_init__(self):
        _require(
            self.score in ENDPOINT_SCORES,
            "endpoint.score",
            self.score,
            f"one of {list(ENDPOINT_SCORES)}",
        )
        _require(
            self.direction in DIRECTIONS,
            "endpoint.direction",
            self.direction,
            f"one of {list(DIRECTIONS)}",
        )
        _require(_is_num(self.min_change) and self.min_change > 0, "endpoint.min_change", self.min_change,
                 "a number > 0")  # fmt: skip
        _require(_is_int(self.followup_day) and self.followup_day > 0, "endpoint.followup_day",
                 self.followup_day, "a whole number of days > 0")  # fmt: skip
        _require(_is_int(self.window_days) and 0 <= self.window_days < self.followup_day, "endpoint.window_days",
                 self.window_days, "a whole number of days, 0 <= window_days < followup_day")  # fmt: skip

    @property
    def followup_window(self) -> tuple[int, int]:
        """The days whose measurement stands for day ``followup_day`` (+/- ``window_days``, inclusive)."""
        return self.followup_day - self.window_days, self.followup_day + self.window_days


@dataclass(frozen=True)
class SingleCell:
    """How the MX1+ monocyte fraction is derived from a ``cells.h5ad`` AnnData file."""

    gene: str = "MX1"
    threshold: float = 1.0
    patient_key: str = "patient_id"
    day_key: str = "day"
    cell_type_key: str = "cell_type"
    monocyte_types: tuple[str, ...] = ("CD14 monocyte", "CD16 monocyte")
    layer: str | None = None

    def __post_init__(self):
        types = self.monocyte_types
        _require(isinstance(types, list | tuple) and len(types) > 0 and all(isinstance(t, str) for t in types),
                 "singlecell.monocyte_types", types, "a non-empty list of cell-type labels")  # fmt: skip
        _set(self, "monocyte_types", tuple(types))
        _require(_is_num(self.threshold), "singlecell.threshold", self.threshold, "a number")
        _require_text(self, "singlecell", ("gene", "patient_key", "day_key", "cell_type_key"))
        _require(self.layer is None or isinstance(self.layer, str), "singlecell.layer", self.layer,
                 "null or a layer name")  # fmt: skip


@dataclass(frozen=True)
class ModelSettings:
    """Candidates, validation effort and the decision threshold stored with the model."""

    seed: int = 20250238
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    folds: int = 5
    repeats: int | None = None  # None: 10 below 500 patients, 2 below 5,000, else 1
    bootstrap: int | None = None  # None: 200 below 500 patients, 100 below 5,000, else 50
    #: the pre-specified model whose validation is the headline and which is registered; the
    #: other candidates are validated and reported as exploratory (no choice made on the same
    #: data, so no winner's curse). None: see :data:`DEFAULT_PRIMARIES`.
    primary: str | None = None
    #: the decision threshold: a patient whose predicted probability is at least this is a
    #: predicted responder (``score``'s ``predicted_response``; the sensitivity, specificity,
    #: PPV and NPV of the training report and of ``validate``). 0.5, because the call is a
    #: label, not a treatment decision: for a calibrated model, a patient at or above 0.5 is
    #: more likely to respond than not, whatever the cohort's prevalence (which the
    #: prevalence as threshold would tie it to, changing the meaning of the column from one
    #: training to the next). MSC therapy had no serious adverse events in the trial, so a
    #: threshold for *treating* would be lower: that choice is the decision curve's (net
    #: benefit at ``net_benefit_thresholds``), and a site that acts on the call sets its own.
    threshold: float = 0.5
    #: threshold probabilities at which net benefit is reported (decision curve analysis)
    net_benefit_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    #: processes for cross-validation and bootstrap refits (results do not depend on it)
    n_jobs: int = 2
    lightgbm: dict[str, Any] = field(default_factory=lambda: dict(LIGHTGBM_DEFAULTS))
    #: also log each model's out-of-fold predictions (one row per patient: the outcome and
    #: the probability, linkable to the study by row order) to MLflow; off, only aggregates
    log_patient_level_predictions: bool = False

    def __post_init__(self):
        _require(isinstance(self.log_patient_level_predictions, bool), "model.log_patient_level_predictions",
                 self.log_patient_level_predictions, "true or false")  # fmt: skip
        _require(
            _is_int(self.seed) and self.seed >= 0, "model.seed", self.seed, "a whole number >= 0"
        )
        cands = self.candidates
        _require(isinstance(cands, list | tuple) and len(cands) > 0 and all(c in CANDIDATES for c in cands),
                 "model.candidates", cands, f"a non-empty list drawn from {list(CANDIDATES)}")  # fmt: skip
        _set(self, "candidates", tuple(cands))
        if self.primary is None:
            preferred = [m for m in DEFAULT_PRIMARIES if m in self.candidates]
            _set(self, "primary", (preferred or self.candidates)[0])
        _require(self.primary in self.candidates, "model.primary", self.primary,
                 f"one of model.candidates {list(self.candidates)}")  # fmt: skip
        nb = self.net_benefit_thresholds
        _require(isinstance(nb, list | tuple) and len(nb) > 0 and all(_is_num(t) and 0 < t < 1 for t in nb),
                 "model.net_benefit_thresholds", nb, "a non-empty list of probabilities strictly between 0 and 1")  # fmt: skip
        _set(self, "net_benefit_thresholds", tuple(float(t) for t in nb))
        _require(
            _is_int(self.folds) and self.folds >= 2,
            "model.folds",
            self.folds,
            "a whole number >= 2",
        )
        for key in ("repeats", "bootstrap"):
            v = getattr(self, key)
            _require(
                v is None or (_is_int(v) and v >= 1),
                f"model.{key}",
                v,
                "null (automatic) or a whole number >= 1",
            )
        _require(
            _is_int(self.n_jobs) and self.n_jobs >= 1,
            "model.n_jobs",
            self.n_jobs,
            "a whole number >= 1",
        )
        _require(_is_num(self.threshold) and 0 < self.threshold < 1, "model.threshold", self.threshold,
                 "a probability strictly between 0 and 1")  # fmt: skip
        _require(
            isinstance(self.lightgbm, dict),
            "model.lightgbm",
            self.lightgbm,
            "a mapping of LightGBM parameters",
        )
        _set(self, "lightgbm", {**LIGHTGBM_DEFAULTS, **self.lightgbm})


#: Benefit models (modeling/benefit.py holds what each is); the first is the PATH primary.
BENEFIT_MODELS = ("risk_constant", "risk_interaction", "effect_penalised", "t_learner", "x_learner",
                  "causal_forest")  # fmt: skip


@dataclass(frozen=True)
class BenefitSettings:
    """Benefit over standard care, for randomised studies only (docs/benefit.md).

    ``randomised`` may assert that the study was randomised when its metadata does not
    say so; None leaves it to the study (``simulation.json``'s ``randomised``).
    """

    treatment_column: str = "arm"
    control_value: str = STANDARD_CARE
    primary: str = BENEFIT_MODELS[0]
    randomised: bool | None = None
    folds: int = 5
    bootstrap: int = 200

    def __post_init__(self):
        _require_text(self, "benefit", ("treatment_column", "control_value"))
        _require(
            self.primary in BENEFIT_MODELS,
            "benefit.primary",
            self.primary,
            f"one of {list(BENEFIT_MODELS)}",
        )
        _require(self.randomised in (None, True, False), "benefit.randomised", self.randomised,
                 "true, false or null (the study's metadata decides)")  # fmt: skip
        _require(
            _is_int(self.folds) and self.folds >= 2,
            "benefit.folds",
            self.folds,
            "a whole number >= 2",
        )
        _require(_is_int(self.bootstrap) and self.bootstrap >= 0, "benefit.bootstrap", self.bootstrap,
                 "a whole number >= 0")  # fmt: skip


#: The sections of an experiment config and their types.
SECTIONS = {"endpoint": Endpoint, "singlecell": SingleCell, "model": ModelSettings}
#: Optional sections: absent (None) unless the config has them.
OPTIONAL_SECTIONS = {"benefit": BenefitSettings}


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data, the endpoint and the model settings.

    Every key: docs/config.md.
    """

    name: str
    data: str = "data/trial"
    baseline_window: tuple[int, int] = (-30, 0)
    endpoint: Endpoint = field(default_factory=Endpoint)
    landmark_day: int | None = None
    assume: dict[str, float] = field(default_factory=lambda: {"dialysis": 0})
    #: the lab tests that become features: null (the tests the product knows: score components
    #: and common liver and blood tests), "all" (every test of the study), or a list of tests.
    #: A test no feature, label, score or assumption reads is never used: its row problems
    #: reject nobody (study/policy.py).
    lab_features: str | tuple[str, ...] | None = None
    singlecell: SingleCell = field(default_factory=SingleCell)
    model: ModelSettings = field(default_factory=ModelSettings)
    benefit: BenefitSettings | None = None

    def __post_init__(self):
        _require(isinstance(self.name, str) and NAME_PATTERN.fullmatch(self.name) is not None, "name", self.name,
                 "1-200 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit "
                 "(it names the MLflow experiment, the registered model and its artifact folder)")  # fmt: skip
        _require(isinstance(self.data, str | Path), "data", self.data, "a directory path")
        _set(self, "data", str(self.data))
        window = self.baseline_window
        _require(isinstance(window, list | tuple) and len(window) == 2 and all(_is_int(x) for x in window)
                 and window[0] <= window[1] <= 0, "baseline_window", window,
                 "[first_day, last_day] with first_day <= last_day <= 0")  # fmt: skip
        _set(self, "baseline_window", (int(window[0]), int(window[1])))
        for key, cls in SECTIONS.items():
            _require(
                isinstance(getattr(self, key), cls), key, getattr(self, key), f"a {cls.__name__}"
            )
        for key, cls in OPTIONAL_SECTIONS.items():
            value = getattr(self, key)
            _require(
                value is None or isinstance(value, cls), key, value, f"null or a {cls.__name__}"
            )
        ep, landmark = self.endpoint, self.landmark_day
        _require(landmark is None or (_is_int(landmark) and 0 < landmark < ep.followup_window[0]),
                 "landmark_day", landmark, "null, or a day after the first infusion and before the follow-up window")  # fmt: skip
        lab = self.lab_features
        _require(lab is None or lab == "all" or (isinstance(lab, list | tuple) and all(
            isinstance(t, str) and t.strip() for t in lab)), "lab_features", lab,
            'null (the known tests), "all", or a list of test names')  # fmt: skip
        if isinstance(lab, list | tuple):
            _set(self, "lab_features", tuple(lab))
        assume = {} if self.assume is None else self.assume
        _require(isinstance(assume, dict), "assume", assume, "a mapping of test name to value")
        for test, value in assume.items():
            _require(
                test in KNOWN_TESTS,
                f"assume.{test}",
                test,
                f"a score component, one of {sorted(KNOWN_TESTS)}",
            )
            _require(
                _is_num(value) and is_plausible(test, value),
                f"assume.{test}",
                value,
                expected(test),
            )
        _set(self, "assume", {k: float(v) for k, v in assume.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dictionary (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def digest(self) -> str:
        """The first 12 hex digits of the SHA-256 of the config as canonical JSON (pages show it)."""
        return config_digest(self.to_dict())

    def with_data(self, data: str | Path | None) -> ExperimentConfig:
        """The same config reading another study directory (the CLI's ``--data``)."""
        return self if data is None else dataclasses.replace(self, data=str(data))


def config_digest(config: dict[str, Any]) -> str:
    """:meth:`ExperimentConfig.digest` of a config as plain data (a model's stored config)."""
    text = json.dumps(_plain(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _check_keys(raw: dict, cls, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown key {path!r}; known keys here: {sorted(known)}")


def _section(raw, cls, where: str):
    """``cls`` built from the mapping ``raw`` (None: the defaults)."""
    raw = {} if raw is None else raw
    _require(isinstance(raw, dict), where, raw, "a mapping")
    _check_keys(raw, cls, where)
    return cls(**raw)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from plain data; errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}"
        )
    _check_keys(raw, ExperimentConfig, "")
    if "name" not in raw:
        raise ConfigError("name: required key is missing")
    optional = {
        k: _section(raw[k], cls, k)
        for k, cls in OPTIONAL_SECTIONS.items()
        if raw.get(k) is not None
    }
    return ExperimentConfig(
        **{**raw, **{k: _section(raw.get(k), cls, k) for k, cls in SECTIONS.items()}, **optional}
    )


def load_config(source: str | Path | dict | ExperimentConfig) -> ExperimentConfig:
    """An experiment config from a YAML file (``yaml.safe_load``: no code runs), a dict, or itself."""
    if isinstance(source, ExperimentConfig):
        return source
    if isinstance(source, dict):
        return config_from_dict(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {str(path)!r}: {err.strerror}") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path.name}: not valid YAML: {err}") from err
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path.name}: {err}") from None
