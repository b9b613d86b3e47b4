"""The experiment configuration: safe YAML load, defaults, validation that names the key.

A config says which study to read, how baseline and follow-up values are picked, what
counts as a response, and how models are trained. It is stored with every model so
that scoring builds features exactly as training did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

ENDPOINT_SCORES = ("child_pugh", "meld", "meld_na", "meld3", "albumin")
DIRECTIONS = ("decrease", "increase")
CANDIDATES = ("lightgbm", "logistic_l2")

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


@dataclass(frozen=True)
class Endpoint:
    """What counts as a response: a change of ``min_change`` in ``direction`` by ``followup_day``."""

    score: str = "child_pugh"
    direction: str = "decrease"
    min_change: float = 1.0
    followup_day: int = 28
    window_days: int = 7


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


@dataclass(frozen=True)
class ModelSettings:
    """Candidates, validation effort and the decision threshold stored with the model."""

    seed: int = 20250238
    candidates: tuple[str, ...] = CANDIDATES
    # the pre-specified model whose validation is the headline and which is registered;
    # the other candidates are validated and reported as exploratory (no choice on the
    # same data, so no winner's curse)
    primary: str = "logistic_l2"
    folds: int = 5
    repeats: int | None = None  # None: 10 below 500 patients, 2 below 5,000, else 1
    bootstrap: int | None = None  # None: 200 below 500 patients, 50 below 5,000, else 10
    threshold: float = 0.5
    # threshold probabilities at which net benefit is reported (decision curve analysis)
    net_benefit_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    n_jobs: int = (
        2  # processes for cross-validation and bootstrap refits (results do not depend on it)
    )
    lightgbm: dict[str, Any] = field(default_factory=lambda: dict(LIGHTGBM_DEFAULTS))


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data, the endpoint and the model settings.

    See the README section "Experiment config" for every key.
    """

    name: str
    data: str = "data/trial"
    baseline_window: tuple[int, int] = (-30, 0)
    endpoint: Endpoint = field(default_factory=Endpoint)
    landmark_day: int | None = None
    assume: dict[str, float] = field(default_factory=lambda: {"dialysis": 0})
    singlecell: SingleCell = field(default_factory=SingleCell)
    model: ModelSettings = field(default_factory=ModelSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dictionary (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def with_data(self, data: str | Path | None) -> ExperimentConfig:
        """The same config reading another study directory (the CLI's ``--data``)."""
        return self if data is None else dataclasses.replace(self, data=str(data))


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _check_keys(section: dict, cls, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in section:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown key {path!r}; known keys here: {sorted(known)}")


def _require(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: bad value {value!r}; expected {expected}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig`; errors name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}"
        )
    _check_keys(raw, ExperimentConfig, "")
    if "name" not in raw:
        raise ConfigError("name: required key is missing")
    name = raw["name"]
    _require(isinstance(name, str) and name.strip() != "", "name", name, "a non-empty string")
    data = raw.get("data", "data/trial")
    _require(isinstance(data, str), "data", data, "a directory path")

    window = raw.get("baseline_window", [-30, 0])
    _require(
        isinstance(window, list | tuple) and len(window) == 2 and all(_is_int(x) for x in window)
        and window[0] <= window[1] <= 0,
        "baseline_window", window, "[first_day, last_day] with first_day <= last_day <= 0",
    )  # fmt: skip

    ep_raw = raw.get("endpoint", {}) or {}
    _require(isinstance(ep_raw, dict), "endpoint", ep_raw, "a mapping")
    _check_keys(ep_raw, Endpoint, "endpoint")
    ep = Endpoint(**ep_raw)
    _require(
        ep.score in ENDPOINT_SCORES, "endpoint.score", ep.score, f"one of {list(ENDPOINT_SCORES)}"
    )
    _require(
        ep.direction in DIRECTIONS, "endpoint.direction", ep.direction, f"one of {list(DIRECTIONS)}"
    )
    _require(
        _is_num(ep.min_change) and ep.min_change > 0,
        "endpoint.min_change",
        ep.min_change,
        "a number > 0",
    )
    _require(_is_int(ep.followup_day) and ep.followup_day > 0, "endpoint.followup_day", ep.followup_day,
             "a whole number of days > 0")  # fmt: skip
    _require(_is_int(ep.window_days) and 0 <= ep.window_days < ep.followup_day, "endpoint.window_days",
             ep.window_days, "a whole number of days, 0 <= window_days < followup_day")  # fmt: skip

    landmark = raw.get("landmark_day")
    _require(landmark is None or (_is_int(landmark) and 0 < landmark < ep.followup_day - ep.window_days),
             "landmark_day", landmark, "null, or a day after the first infusion and before the follow-up window")  # fmt: skip

    assume = raw.get("assume", {"dialysis": 0})
    assume = {} if assume is None else assume
    _require(isinstance(assume, dict), "assume", assume, "a mapping of test name to value")
    from .units import KNOWN_TESTS, PLAUSIBLE_RANGES  # local: config knows nothing else of units

    for test, value in assume.items():
        _require(
            test in KNOWN_TESTS,
            f"assume.{test}",
            test,
            f"a score component, one of {sorted(KNOWN_TESTS)}",
        )
        low, high = PLAUSIBLE_RANGES[test]
        _require(
            _is_num(value) and low <= value <= high,
            f"assume.{test}",
            value,
            f"a number in {low:g}-{high:g}",
        )

    sc_raw = raw.get("singlecell", {}) or {}
    _require(isinstance(sc_raw, dict), "singlecell", sc_raw, "a mapping")
    _check_keys(sc_raw, SingleCell, "singlecell")
    if "monocyte_types" in sc_raw:
        types = sc_raw["monocyte_types"]
        _require(isinstance(types, list) and types and all(isinstance(t, str) for t in types),
                 "singlecell.monocyte_types", types, "a non-empty list of cell-type labels")  # fmt: skip
        sc_raw = {**sc_raw, "monocyte_types": tuple(types)}
    sc = SingleCell(**sc_raw)
    _require(_is_num(sc.threshold), "singlecell.threshold", sc.threshold, "a number")

    m_raw = raw.get("model", {}) or {}
    _require(isinstance(m_raw, dict), "model", m_raw, "a mapping")
    _check_keys(m_raw, ModelSettings, "model")
    lgb = {**LIGHTGBM_DEFAULTS, **(m_raw.get("lightgbm") or {})}
    cands = tuple(m_raw.get("candidates", CANDIDATES))
    nb = m_raw.get("net_benefit_thresholds", ModelSettings.net_benefit_thresholds)
    _require(isinstance(nb, list | tuple) and len(nb) > 0 and all(_is_num(t) and 0 < t < 1 for t in nb),
             "model.net_benefit_thresholds", nb, "a non-empty list of probabilities strictly between 0 and 1")  # fmt: skip
    # an unstated primary is the default one if it is a candidate, else the first candidate
    default_primary = (
        ModelSettings.primary if ModelSettings.primary in cands or not cands else cands[0]
    )
    model = ModelSettings(**{**m_raw, "lightgbm": lgb, "candidates": cands,
                             "primary": m_raw.get("primary", default_primary),
                             "net_benefit_thresholds": tuple(float(t) for t in nb)})  # fmt: skip
    _require(
        _is_int(model.seed) and model.seed >= 0, "model.seed", model.seed, "a whole number >= 0"
    )
    _require(len(cands) > 0 and all(c in CANDIDATES for c in cands), "model.candidates", list(cands),
             f"a non-empty list drawn from {list(CANDIDATES)}")  # fmt: skip
    _require(model.primary in cands, "model.primary", model.primary,
             f"one of model.candidates {list(cands)}")  # fmt: skip
    _require(
        _is_int(model.folds) and model.folds >= 2, "model.folds", model.folds, "a whole number >= 2"
    )
    for key in ("repeats", "bootstrap"):
        v = getattr(model, key)
        _require(
            v is None or (_is_int(v) and v >= 1),
            f"model.{key}",
            v,
            "null (automatic) or a whole number >= 1",
        )
    _require(
        _is_int(model.n_jobs) and model.n_jobs >= 1,
        "model.n_jobs",
        model.n_jobs,
        "a whole number >= 1",
    )
    _require(_is_num(model.threshold) and 0 < model.threshold < 1, "model.threshold", model.threshold,
             "a probability strictly between 0 and 1")  # fmt: skip

    return ExperimentConfig(
        name=name,
        data=data,
        baseline_window=(int(window[0]), int(window[1])),
        endpoint=ep,
        landmark_day=landmark,
        assume={k: float(v) for k, v in assume.items()},
        singlecell=sc,
        model=model,
    )


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment config from YAML (``yaml.safe_load``: no code is ever executed)."""
    path = Path(path)
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
