"""Loading a registered response model: its own artifacts, read without the pyfunc.

A version's artifacts are the model file (LightGBM text or skops) and ``model_spec.json``
(the experiment config, the feature columns and their spec, the lab units, the
threshold): the same files and the same :class:`~msc_response.modeling.fitted.FittedModel`
its MLflow pyfunc wraps, without loading the pyfunc (about 2.5 s). The tracking URI the
caller set is used and left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import tracking
from ..errors import ConfigError
from ..modeling.fitted import LoadedModel


def load_model(uri: str) -> LoadedModel:
    """Load a model by URI (``models:/NAME@alias``, ``models:/NAME/VERSION`` or ``runs:/...``).

    Raises
    ------
    ConfigError
        The model or alias does not exist, is not an msc-response model, or belongs to
        another experiment than its registered name says.
    """
    import mlflow  # deferred: heavy, loaded when a model is
    from mlflow.exceptions import MlflowException

    name, version = "", ""
    try:
        client = tracking.client()
        if uri.startswith("models:/"):
            ref = uri.removeprefix("models:/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = str(client.get_model_version_by_alias(name, alias).version)
            elif "/" in ref:
                name, version = ref.split("/", 1)
                client.get_model_version(name, version)
        with tracking.using():  # models:/ and runs:/ URIs resolve through the tracking URI
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        flavor = mlflow.models.Model.load(local).flavors.get("python_function", {})
    except (MlflowException, OSError) as err:
        raise ConfigError(f"model {uri!r}: cannot load it: {str(err).splitlines()[0]}") from None
    artifacts = flavor.get("artifacts") or {}
    if not {"model", "model_spec"} <= set(artifacts):
        raise ConfigError(
            f"model {uri!r}: not an msc-response model (no feature config stored with it)"
        )
    spec = json.loads((local / artifacts["model_spec"]["path"]).read_text())
    if not {"feature_columns", "config", "feature_spec"} <= set(spec):
        raise ConfigError(f"model {uri!r}: not an msc-response model of this version "
                          "(its model_spec has no feature spec; train it again)")  # fmt: skip
    if name and spec.get("experiment") != name:
        raise ConfigError(
            f"model {uri!r}: the model belongs to experiment {spec.get('experiment')!r}, not {name!r}"
        )
    model_file = local / artifacts["model"]["path"]
    if not model_file.is_file():
        raise ConfigError(f"model {uri!r}: the model file {model_file.name!r} is missing")
    return LoadedModel(uri, name or spec.get("experiment", ""), version, spec, str(model_file))
