"""msc-response: predict response to mesenchymal stromal cell therapy in decompensated cirrhosis.

The public API, for notebooks and scripts (the ``msc-response`` command line is a thin
layer over it)::

    import msc_response as msc

    config = msc.load_config("experiments/child_pugh_day28.yaml")   # or a dict
    study = msc.simulate("trial", seed=1)        # SIMULATED; or msc.load_study("data/site")
    features = msc.build_features(config, study)
    result = msc.fit(config, features)           # in memory: validation, plots, no MLflow
    result.plot_calibration()
    summary = msc.log_and_register(result)       # the MLflow run, the registry, the gate
    model = msc.load_model(summary["model_uri"])
    predictions = msc.predict(model, study, explain=3)

Names are imported on first use, so ``import msc_response`` stays light (no MLflow,
LightGBM or Spark until they are needed).
"""

from __future__ import annotations

import importlib

from .errors import ConfigError, DataError, MscResponseWarning, Problem

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    "load_config": "msc_response.config",
    "ExperimentConfig": "msc_response.config",
    "load_study": "msc_response.study",
    "Study": "msc_response.study",
    "build_features": "msc_response.features",
    "FeatureSet": "msc_response.features",
    "simulate": "msc_response.simulator",
    "fit": "msc_response.modeling.fit",
    "TrainingResult": "msc_response.modeling.fit",
    "log_and_register": "msc_response.registry.registration",
    "train": "msc_response.pipelines.train",
    "load_model": "msc_response.registry.load",
    "LoadedModel": "msc_response.modeling.fitted",
    "predict": "msc_response.modeling.predict",
    "Predictions": "msc_response.modeling.predict",
    "child_pugh": "msc_response.scores",
    "child_pugh_class": "msc_response.scores",
    "meld": "msc_response.scores",
    "meld_na": "msc_response.scores",
    "meld3": "msc_response.scores",
    "round_half_up": "msc_response.scores",
    "convert": "msc_response.units",
}

__all__ = ["ConfigError", "DataError", "MscResponseWarning", "Problem", "__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'msc_response' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
