"""Shared fixtures: a small hand-written study and a simulated trial."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
import warnings
from pathlib import Path

import pytest

from msc_response.domain import TRIAL_ARMS
from msc_response.errors import MscResponseWarning
from msc_response.simulator import write_simulation as simulate

#: Patients in the default simulated trial (phase Ia 24 + phase Ib 9).
TRIAL_PATIENTS = sum(a.size for a in TRIAL_ARMS)

PATIENTS = """\
patient_id,sex,age_years,etiology,arm,dose_per_infusion,n_infusions,interval_days
P1,M,50,HBV,A,100000000,1,0
P2,F,61,HBV,B,200000000,3,7
P3,M,44,alcohol,A,100000000,1,0
P4,F,58,PBC,B,200000000,3,7
"""

# P1: baseline at day -10 and 0 (0 wins); follow-up 25 and 31 (31 wins the tie on distance 3).
# P2: SI units; its albumin at follow-up rises.
# P3: no follow-up in days 21..35 -> excluded.
# P4: no baseline encephalopathy grade -> needs `assume`.
LABS = """\
patient_id,day,test,value,unit
P1,-10,bilirubin,5.0,mg/dL
P1,0,bilirubin,3.2,mg/dL
P1,0,albumin,2.6,g/dL
P1,0,inr,2.0,ratio
P1,0,creatinine,1.0,mg/dL
P1,0,sodium,138,mmol/L
P1,0,ascites,1,grade
P1,0,encephalopathy,1,grade
P1,0,platelets,80,10^9/L
P1,25,bilirubin,2.5,mg/dL
P1,31,bilirubin,1.8,mg/dL
P1,31,albumin,2.9,g/dL
P1,31,inr,1.6,ratio
P1,31,creatinine,1.0,mg/dL
P1,31,ascites,1,grade
P1,31,encephalopathy,1,grade
P2,0,bilirubin,71.82,umol/L
P2,0,albumin,30,g/L
P2,0,inr,1.2,ratio
P2,0,creatinine,167.96,umol/L
P2,0,sodium,137,mEq/L
P2,0,ascites,2,grade
P2,0,encephalopathy,0,grade
P2,0,platelets,120,10^9/L
P2,28,bilirubin,71.82,umol/L
P2,28,albumin,36,g/L
P2,28,inr,1.2,ratio
P2,28,creatinine,167.96,umol/L
P2,28,ascites,2,grade
P2,28,encephalopathy,0,grade
P3,0,bilirubin,2.0,mg/dL
P3,0,albumin,3.0,g/dL
P3,0,inr,1.5,ratio
P3,0,creatinine,1.1,mg/dL
P3,0,ascites,1,grade
P3,0,encephalopathy,0,grade
P3,14,bilirubin,2.0,mg/dL
P4,-3,bilirubin,3.5,mg/dL
P4,-3,albumin,3.2,g/dL
P4,-3,pt,19,s
P4,-3,pt_control,12,s
P4,-3,ascites,1,grade
P4,28,bilirubin,3.5,mg/dL
P4,28,albumin,3.2,g/dL
P4,28,pt,19,s
P4,28,pt_control,12,s
P4,28,ascites,0,grade
"""

CELLS = """\
patient_id,day,population,parent,fraction
P1,0,MX1+ monocytes,monocytes,0.30
P1,7,MX1+ monocytes,monocytes,0.18
P2,-2,MX1+ monocytes,monocytes,0.22
P2,7,MX1+ monocytes,monocytes,0.10
"""


def write_study(
    directory: Path, patients: str = PATIENTS, labs: str = LABS, cells: str | None = CELLS
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "patients.csv").write_text(textwrap.dedent(patients))
    (directory / "labs.csv").write_text(textwrap.dedent(labs))
    if cells is not None:
        (directory / "cells.csv").write_text(textwrap.dedent(cells))
    return directory


def copy_study(
    src: Path, dst: Path, ids: dict | None = None, fmt: str = "csv", labs_extra: str = ""
) -> Path:
    """A copy of a study (every cell read and written as text), with ids rewritten by ``ids``
    and ``labs_extra`` (CSV lines ``patient_id,day,test,value,unit``) added to the labs."""
    import pandas as pd

    dst.mkdir(parents=True)
    for name in ("patients", "labs", "cells"):
        df = pd.read_csv(src / f"{name}.csv", dtype=str, keep_default_na=False)
        if ids:
            df["patient_id"] = df["patient_id"].replace(ids)
        if name == "labs" and labs_extra:
            extra = pd.read_csv(io.StringIO("patient_id,day,test,value,unit\n" + labs_extra),
                                dtype=str, keep_default_na=False)  # fmt: skip
            df = pd.concat([df, extra], ignore_index=True)
        if fmt == "csv":
            df.to_csv(dst / f"{name}.csv", index=False)
        else:
            df.to_parquet(dst / f"{name}.parquet", index=False)
    return dst


def run_cli(*args):
    """``msc-response ARGS`` in this process (paths given as paths): Click's result."""
    from typer.testing import CliRunner

    from msc_response.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def study_dir(tmp_path) -> Path:
    return write_study(tmp_path / "study")


@pytest.fixture(scope="session")
def trial_dir(tmp_path_factory) -> Path:
    """The default SIMULATED trial cohort (TRIAL_PATIENTS patients), written once per session."""
    out = tmp_path_factory.mktemp("sim") / "trial"
    simulate(out, design="trial", seed=1)
    return out


@pytest.fixture(scope="session")
def exportable_trial(tmp_path_factory) -> Path:
    """A SIMULATED trial without AnnData files (no importer carries them), for the SDTM and
    FHIR round trips; written once per session."""
    out = tmp_path_factory.mktemp("sim") / "exportable"
    simulate(out, design="trial", seed=11, h5ad_patients=0)
    return out


@contextlib.contextmanager
def statistical_warnings(match: str = ""):
    """The MscResponseWarnings of the block, one of which must match ``match``.

    At trial size several are expected (Riley's minimum, a calibration slope that the
    predictions cannot identify), so tests that train on a trial assert the one they mean.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MscResponseWarning)
        yield caught
    messages = [str(w.message) for w in caught if issubclass(w.category, MscResponseWarning)]
    assert any(re.search(match, m) for m in messages), messages


@contextlib.contextmanager
def private_store(root: Path, *, chdir: bool = False):
    """MLflow on a new SQLite store under ``root/mlruns`` inside the block (optionally with
    ``root`` as the working directory); the environment is given back afterwards."""
    from msc_response import tracking

    mp = pytest.MonkeyPatch()
    (root / "mlruns").mkdir()  # an explicit store's folder is never created
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    # configure() also sets MLFLOW_REGISTRY_URI (mlflow.set_registry_uri does); setting it here
    # first makes undo() give the environment back as it was, so later tests do not inherit it
    mp.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if chdir:
        mp.chdir(root)
    try:
        tracking.configure()
        yield root
    finally:
        mp.undo()


def train_and_fresh_cohort(root: Path, name: str, seed: int, fresh_n: int):
    """Inside a :func:`private_store`: a model trained and registered on a SIMULATED trial
    (``root/trial``, light validation) and a fresh SIMULATED cohort of ``fresh_n`` (``root/fresh``).
    Returns the config and the training summary."""
    import warnings

    from msc_response import MscResponseWarning
    from msc_response.config import config_from_dict
    from msc_response.pipelines.train import train
    from msc_response.simulator import write_simulation

    write_simulation(root / "trial", design="trial", seed=seed)
    write_simulation(
        root / "fresh", design="trial", n_patients=fresh_n, seed=seed + 1, h5ad_patients=0
    )
    config = config_from_dict({"name": name, "model": {"repeats": 2, "bootstrap": 30}})
    with warnings.catch_warnings():  # Riley and calibration warnings: tested in test_train
        warnings.simplefilter("ignore", MscResponseWarning)
        return config, train(config, root / "trial")
