"""MLflow set-up and helpers: the tracking URI, experiments, parameters, package versions.

By default runs go to a local SQLite store, ``sqlite:///mlruns/mlflow.db``, with
artifacts under ``mlruns/`` (MLflow 3 deprecates the plain file store).
``MLFLOW_TRACKING_URI`` overrides it, so a team's tracking server works unchanged.
Patient identifiers never reach MLflow: only pseudonymous row indices do.
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path


def tracking_uri(root: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store under ``root/mlruns``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = Path(root or Path.cwd()).resolve() / "mlruns" / "mlflow.db"
    return f"sqlite:///{db}"


def configure(root: str | Path | None = None) -> str:
    """Point MLflow (tracking and registry) at :func:`tracking_uri`; returns the URI."""
    import mlflow

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database (``mlruns/``)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent.resolve().as_uri()
    return None  # a tracking server decides


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created (with local artifacts) if it does not exist."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root(mlflow.get_tracking_uri())
    location = f"{root}/{name}" if root else None
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """The commit of the working tree, or "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    names = [
        "msc-response",
        "mlflow",
        "lightgbm",
        "scikit-learn",
        "shap",
        "pandas",
        "numpy",
        "skops",
    ]
    return {n: metadata.version(n) for n in names}


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict to MLflow params: ``{"endpoint": {"score": "meld"}}`` -> ``{"endpoint.score": "meld"}``."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)
    return out
