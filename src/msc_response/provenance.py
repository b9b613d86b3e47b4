"""What made a result: this package's version, its git commit, the versions it depends on.

Pages show them (:class:`msc_response.reporting.page.Provenance`); training logs them to
MLflow as parameters.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def git_commit() -> str:
    """The commit of the git checkout this package runs from, or "unknown".

    Asked of the package's own folder, not of the working directory (a user's project may
    be a repository of its own), and only when git tracks the package's files there: an
    installed copy inside some checkout (a virtual environment in it) is "unknown".
    """
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True,
                              check=True, timeout=5).stdout.strip()  # fmt: skip

    try:
        git("ls-files", "--error-unmatch", Path(__file__).name)
        return git("rev-parse", "HEAD")
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
