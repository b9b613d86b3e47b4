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
from ..modeling import gate
from ..modeling.fitted import LoadedModel


def record_decision(client, name: str, version: str, decision: str) -> None:
    """Record the gate's decision on ``version``: its last tag, which makes it usable."""
    client.set_model_version_tag(name, version, tracking.TAG_CHAMPION_DECISION, decision[:5000])


#: The features digest of the cohort a recalibrated version was recalibrated on.
RECALIBRATION_DIGEST_TAG = "recalibration_digest"


def decision_recorded(tags: dict) -> bool:
    """Whether a version's registration finished: its gate decision is recorded.

    Recalibrated versions registered before decisions were recorded for them (tagged
    ``recalibrates`` and, last, ``model``; no ``recalibration_digest``) count as finished.
    """
    legacy = {"recalibrates", "model"} <= set(tags) and RECALIBRATION_DIGEST_TAG not in tags
    return tracking.TAG_CHAMPION_DECISION in tags or legacy


def unusable(uri: str, tags: dict) -> str | None:
    """Why the registered version with ``tags`` may not be used (None: it may)."""
    if gate.INCOMPLETE_TAG in tags:
        return f"model {uri!r}: {tags[gate.INCOMPLETE_TAG]}"
    if not decision_recorded(tags):
        return (f"model {uri!r}: the version has no recorded gate decision: its registration did not "
                "finish (a killed or still running job); it is not used - train again or wait for it")  # fmt: skip
    return None


def load_model(uri: str) -> LoadedModel:
    """Load a model by URI (``models:/NAME@alias``, ``models:/NAME/VERSION`` or ``runs:/...``).

    An alias is resolved once, and the files of the version it named are loaded
    (``models:/NAME/VERSION``), so an alias moved meanwhile cannot mix two versions. A
    registered version whose gate decision is not recorded is refused (see
    :func:`unusable`).

    Raises
    ------
    ConfigError
        The model or alias does not exist, is not an msc-response model, belongs to
        another experiment than its registered name says, or is not usable.
    """
    import mlflow  # deferred: heavy, loaded when a model is
    from mlflow.exceptions import MlflowException

    name, version, files, aliases = "", "", uri, ()
    try:
        client = tracking.client()
        if uri.startswith("models:/"):
            ref = uri.removeprefix("models:/")
            mv = None
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = _version_of_alias(client, uri, name, alias)  # resolved once
            elif "/" in ref:
                name, version = ref.split("/", 1)
            if version:
                mv = client.get_model_version(name, version)
                version = str(mv.version)
                aliases = mv.aliases or ()
                files = f"models:/{name}/{version}"
                why = unusable(uri, mv.tags or {})
                if why:
                    raise ConfigError(why)
        with tracking.using():  # models:/ and runs:/ URIs resolve through the tracking URI
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=files))
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
    status = gate.status_of(aliases, exploratory=bool(spec.get("exploratory")))
    return LoadedModel(
        uri, name or spec.get("experiment", ""), version, spec, str(model_file), status
    )


def _version_of_alias(client, uri: str, name: str, alias: str) -> str:
    """The version ``alias`` points at; a missing alias is a ConfigError naming those that exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        try:
            existing = client.get_registered_model(name).aliases
        except MlflowException:
            raise ConfigError(f"model {uri!r}: no registered model {name!r} in the tracking store "
                              f"{tracking.tracking_uri()!r}") from None  # fmt: skip
        if alias in existing:
            raise  # the alias exists: another registry error, not ours to rename
        listed = ", ".join(f"{a} (version {v})" for a, v in sorted(existing.items())) or "none"
        preferred = gate.preferred_alias(existing)
        hint = (f"; `make score` would use {preferred!r} (models:/{name}@{preferred})" if preferred
                else "; `make score` would find none of " + ", ".join(gate.SCORING_ORDER))  # fmt: skip
        raise ConfigError(f"model {uri!r}: alias {alias!r} not found; the aliases of {name!r} are: "
                          f"{listed}{hint}") from None  # fmt: skip
