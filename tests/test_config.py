from pathlib import Path

import pytest

from msc_response.config import config_from_dict, load_config
from msc_response.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_load(path):
    cfg = load_config(path)
    assert cfg.name and cfg.endpoint.followup_day == 28


def test_defaults_fill_in():
    cfg = config_from_dict({"name": "x"})
    assert cfg.baseline_window == (-30, 0)
    assert cfg.endpoint.score == "child_pugh" and cfg.endpoint.direction == "decrease"
    assert cfg.assume == {"dialysis": 0.0}
    assert cfg.model.lightgbm["min_child_samples"] < 20  # tuned for tiny data


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x", "endpont": {}}, "unknown key 'endpont'"),
        ({"name": "x", "endpoint": {"scroe": "meld"}}, "unknown key 'endpoint.scroe'"),
        ({"name": "x", "endpoint": {"score": "bmi"}}, "endpoint.score: bad value 'bmi'"),
        ({"name": "x", "endpoint": {"direction": "down"}}, "endpoint.direction: bad value 'down'"),
        ({"name": "x", "endpoint": {"min_change": 0}}, "endpoint.min_change: bad value 0"),
        ({"name": "x", "baseline_window": [0, -30]}, "baseline_window: bad value [0, -30]"),
        ({"name": "x", "landmark_day": 40}, "landmark_day: bad value 40"),
        ({"name": "x", "assume": {"encephalopathy": 7}}, "assume.encephalopathy: bad value 7"),
        ({"name": "x", "assume": {"platelets": 100}}, "assume.platelets"),
        ({"name": "x", "model": {"folds": 1}}, "model.folds: bad value 1"),
        ({"name": "x", "model": {"candidates": ["xgboost"]}}, "model.candidates"),
        ({"name": "x", "model": {"threshold": 1.5}}, "model.threshold: bad value 1.5"),
        (
            {"name": "x", "model": {"candidates": ["lightgbm"], "primary": "logistic_l2"}},
            "model.primary",
        ),
        (
            {"name": "x", "model": {"net_benefit_thresholds": [0, 0.5]}},
            "model.net_benefit_thresholds",
        ),
        ({"name": "../../tmp/x"}, "name: bad value '../../tmp/x'"),
        ({"data": "d"}, "name: required key is missing"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(raw)


def test_yaml_is_loaded_safely(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_a_config_built_in_code_is_validated_too():
    from msc_response.config import Endpoint, ExperimentConfig, ModelSettings

    with pytest.raises(ConfigError, match="endpoint.score: bad value 'bmi'"):
        Endpoint(score="bmi")
    with pytest.raises(ConfigError, match="model.folds: bad value 1"):
        ExperimentConfig("x", model=ModelSettings(folds=1))
    with pytest.raises(ConfigError, match="baseline_window: bad value"):
        ExperimentConfig("x", baseline_window=(5, 0))
    built = ExperimentConfig(
        "x", model=ModelSettings(candidates=["lightgbm"], lightgbm={"num_leaves": 3})
    )
    assert (
        built.model.candidates == ("lightgbm",) and built.model.lightgbm["min_child_samples"] == 4
    )
    assert built == config_from_dict(
        {"name": "x", "model": {"candidates": ["lightgbm"], "lightgbm": {"num_leaves": 3}}}
    )
    assert load_config({"name": "x"}) == load_config(load_config({"name": "x"}))
