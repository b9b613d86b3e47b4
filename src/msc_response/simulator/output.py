"""Writing a SIMULATED study directory, without ever destroying what the user had.

``out`` may be new, empty, or a previous simulator output (replaced as a whole). A
directory holding anything else is refused unless ``force``; even then only the
simulator's own files (a readable ``simulation.json`` saying ``"simulated": true`` marks
them) are replaced, and files it did not write are never replaced or deleted. Everything
is built in the output's work directory beside ``out`` (:func:`msc_response.io.work_dir`),
removed whatever happens; one left by a killed run (its process gone) is removed by the
next run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..domain import TRIAL_ARMS, Arm
from ..errors import ConfigError
from ..io import ChunkWriter, work_dir
from ..study.partitioning import PartWriter
from . import cohort
from .model import SIMULATED_NOTE

#: Files the simulator writes; nothing else in an output directory is its own.
SIMULATOR_FILES = frozenset({*(f"{t}.{x}" for t in ("patients", "labs", "cells") for x in ("csv", "parquet")),
                             "truth.csv", "simulation.json", "README.txt", "cells.h5ad"})  # fmt: skip
#: Directories the simulator writes (``parts``: each table as hash parts by patient).
SIMULATOR_DIRS = frozenset({"patients", "labs", "cells"})


def write_simulation(
    out: str | Path,
    *,
    design: str = "trial",
    n_patients: int | None = None,
    seed: int = 0,
    fmt: str = "csv",
    baseline_only: bool = False,
    h5ad_patients: int = 4,
    force: bool = False,
    parts: int = 0,
    arms: tuple[Arm, ...] = TRIAL_ARMS,
    rct_design: cohort.rct.RctDesign | None = None,
) -> dict:
    """Write a SIMULATED study directory to ``out``; returns the ``simulation.json`` content.

    Parameters
    ----------
    out : path
        The study directory. A new or empty directory, or a previous simulator output
        (replaced as a whole). A directory holding anything else is refused unless
        ``force``; even then only the simulator's own files are replaced, and files it did
        not write are never replaced or deleted. Built in a temporary directory beside
        ``out`` (removed on failure; one left by a killed run is removed by the next run)
        and moved into place at the end.
    design, n_patients, seed, baseline_only, arms, rct_design
        See :func:`~msc_response.simulator.cohort.generate_chunks`.
    fmt : {"csv", "parquet"}
        Format of the tables (Parquet for large cohorts; written chunk by chunk).
    h5ad_patients : int
        Also write ``cells.h5ad`` with single cells for this many patients (0: none).
    force : bool
        Write into a directory that holds files the simulator did not write.
    parts : int
        With ``fmt="parquet"``: each table as a directory of this many part files, a
        patient's rows in the same part of every table
        (:mod:`~msc_response.study.partitioning`; the Spark engine then scores without
        a shuffle). 0: one file per table.

    Raises
    ------
    ConfigError
        A bad parameter or an ``out`` that may not be written, naming the parameter.
    """
    cohort.check_parameters(design, n_patients, seed)
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"fmt: expected 'csv' or 'parquet', got {fmt!r}")
    if not (cohort.is_whole(parts) and parts >= 0):
        raise ConfigError(f"parts: expected a whole number >= 0, got {parts!r}")
    if parts and fmt != "parquet":
        raise ConfigError(
            f"parts: part files are Parquet; give fmt='parquet' (--format parquet), got {fmt!r}"
        )
    if not (cohort.is_whole(h5ad_patients) and h5ad_patients >= 0):
        raise ConfigError(f"h5ad_patients: expected a whole number >= 0, got {h5ad_patients!r}")
    out = Path(os.path.abspath(out))
    how = _install_mode(out, force)
    with work_dir(out, option="out") as work:
        tmp = work / "new"
        tmp.mkdir()
        writers = {
            name: PartWriter(tmp / name, int(parts))
            if parts
            else ChunkWriter(tmp / f"{name}.{fmt}")
            for name in ("patients", "labs", "cells")
        }
        truth_parts, first_cells = [], None
        for chunk in cohort.generate_chunks(
            design, n_patients, seed, baseline_only=baseline_only, arms=arms, rct_design=rct_design
        ):
            for name, w in writers.items():
                w.write(getattr(chunk, name))
            truth_parts.append(chunk.truth)
            if first_cells is None:
                first_cells = chunk.cells
        for w in writers.values():
            w.close()
        truth = pd.concat(truth_parts, ignore_index=True)
        truth.to_csv(tmp / "truth.csv", index=False, lineterminator="\n")
        if h5ad_patients > 0:
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
            write_h5ad(tmp / "cells.h5ad", first_cells, h5ad_patients, rng)
        meta = {
            **cohort.metadata(design, seed, len(truth), baseline_only, arms, truth, rct_design),
            "format": fmt,
            **({"parts": int(parts)} if parts else {}),
        }
        (tmp / "simulation.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (tmp / "README.txt").write_text(SIMULATED_NOTE + "\n")
        _install(tmp, out, how, old=work / "old")
    return meta


def _is_simulator_output(directory: Path) -> bool:
    """True when ``directory/simulation.json`` is readable and says ``"simulated": true``."""
    meta = directory / "simulation.json"
    try:
        content = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # unreadable: not known to be the simulator's
    return isinstance(content, dict) and content.get("simulated") is True


def _install_mode(out: Path, force: bool) -> str:
    """How ``out`` may be written: ``new``, ``replace`` (a whole previous output) or ``merge``."""
    if out.is_symlink():
        raise ConfigError(f"out: {str(out)!r} is a symbolic link; give the directory it points to")
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} is an existing file; the simulator writes a study "
                          "directory: give a new or empty directory")  # fmt: skip
    entries = sorted(out.iterdir())
    if not entries:
        return "new"
    ours = _is_simulator_output(out)
    own = {e.name for e in entries if ours and _is_own_kind(e)}
    foreign = [e.name for e in entries if e.name not in own]
    if not foreign:
        return "replace"
    shown = ", ".join(repr(f) for f in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
    if not force:
        raise ConfigError(
            f"out: {str(out)!r} is a non-empty directory that is not a previous simulator output "
            f"(it holds {shown}); give a new or empty directory, or force=True (--force) to write "
            "the simulator's files beside the others (files the simulator did not write are never "
            "replaced or deleted)"
        )
    clashes = [f for f in foreign if f in SIMULATOR_FILES | SIMULATOR_DIRS]
    if clashes:
        raise ConfigError(
            f"out: {str(out)!r} holds {', '.join(map(repr, clashes))}, which the simulator did not "
            "write (no simulation.json marks them as simulated); even with force they are never "
            "replaced: give another directory"
        )
    return "merge"


def _is_own_kind(entry: Path) -> bool:
    """A file or part directory with a name the simulator writes (not yet: that it wrote it)."""
    if entry.is_symlink():
        return False
    return (entry.name in SIMULATOR_FILES and entry.is_file()) or (
        entry.name in SIMULATOR_DIRS and entry.is_dir()
    )


def _install(tmp: Path, out: Path, how: str, old: Path) -> None:
    """Move the directory built in ``tmp`` to ``out`` (a replaced whole output goes to ``old``)."""
    if how == "new":
        os.replace(tmp, out)  # onto a missing or empty directory
    elif how == "replace":
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:  # merge: replace the simulator's own files only, simulation.json last
        # (every simulator-named file here is the simulator's own: _install_mode checked it)
        ours = _is_simulator_output(out)
        stale = [p for p in out.iterdir() if _is_own_kind(p)] if ours else []
        if ours:  # first: until the end, the directory no longer claims to be a simulation
            (out / "simulation.json").unlink()
        new = {p.name for p in tmp.iterdir()}
        for name in sorted(new - {"simulation.json"}):
            if (out / name).is_dir():  # an earlier run's part directory (checked: its own)
                shutil.rmtree(out / name)
            os.replace(tmp / name, out / name)
        for p in stale:
            if p.name not in new:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        os.replace(tmp / "simulation.json", out / "simulation.json")


def write_h5ad(
    path: Path,
    cells: pd.DataFrame,
    n_patients: int,
    rng: np.random.Generator,
    cells_per_sample: int = 400,
) -> None:
    """A small single-cell AnnData for the first ``n_patients``: monocytes MX1+ at the simulated fraction."""
    import anndata

    ids = list(dict.fromkeys(cells["patient_id"]))[:n_patients]
    rows = cells[cells["patient_id"].isin(ids)]
    types = np.array(["CD14 monocyte", "CD16 monocyte", "T cell", "B cell", "NK cell"])
    obs_parts, x_parts = [], []
    for r in rows.itertuples(index=False):
        t = types[rng.choice(len(types), cells_per_sample, p=[0.45, 0.1, 0.3, 0.1, 0.05])]
        mono = np.isin(t, types[:2])
        positive = mono & (rng.random(cells_per_sample) < r.fraction)
        mx1 = np.where(
            positive,
            rng.normal(2.5, 0.4, cells_per_sample),
            np.abs(rng.normal(0, 0.3, cells_per_sample)),
        )
        other = np.abs(rng.normal(1.0, 0.5, (cells_per_sample, 3)))
        x_parts.append(np.column_stack([mx1.clip(0, None), other]).astype(np.float32))
        obs_parts.append(
            pd.DataFrame({"patient_id": str(r.patient_id), "day": int(r.day), "cell_type": t})
        )
    obs = pd.concat(obs_parts, ignore_index=True)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=["MX1", "ISG15", "CD14", "FCGR3A"])
    adata = anndata.AnnData(X=np.vstack(x_parts), obs=obs, var=var)
    adata.uns["simulated"] = SIMULATED_NOTE
    adata.write_h5ad(path)
