"""SIMULATED cohorts of MSC-treated decompensated cirrhosis, with known truth.

Individual patient data of the phase Ia/Ib trial (Shi et al., Signal Transduct Target
Ther 2025;10:238) are not public. The simulator generates cohorts that follow the
project's data contract exactly, so the whole chain can be checked against a known
truth; everything it writes says ``simulated`` (``simulation.json``, ``truth.csv``).

* :func:`generate_chunks`, :func:`simulate_tables`: generate (in chunks, or a whole
  cohort in memory); :func:`write_simulation`: write a study directory.
* :mod:`.model`: the generative model (latent traits, baseline, responses, MX1+ course,
  lab course), documented in its docstring; :mod:`.followup`: day-28 labs that realise
  the drawn labels, and the probability of the realised labels (the truth);
  :mod:`.cohort`: chunks, designs, metadata; :mod:`.output`: the writer.
"""

from ..domain import TRIAL_ARMS
from .cohort import (
    CALIBRATION_TARGETS,
    CHUNK,
    IB_SPLIT_REASON,
    Chunk,
    SimulatedTables,
    calibration_rates,
    generate_chunks,
    scaled_arms,
    simulate_tables,
)
from .model import ENDPOINTS, RESPONSE_COEF, SIMULATED_NOTE, VISITS
from .output import SIMULATOR_FILES, write_simulation


def simulate(design: str = "trial", n_patients: int | None = None, seed: int = 0, *,
             baseline_only: bool = False, rct_design=None):  # fmt: skip
    """A SIMULATED cohort in memory, validated like a study read from disk.

    The :class:`~msc_response.study.Study` says ``simulated`` and carries the simulator's
    ``truth`` (true response probabilities, drawn and realised labels). Writing a study
    directory is :func:`write_simulation`.
    """
    from pathlib import Path

    from ..study import (
        study_from_frames,  # deferred: pandera (via study) loads slowly; writing a study needs none
    )

    t = simulate_tables(
        design, n_patients, seed, baseline_only=baseline_only, rct_design=rct_design
    )
    files = {name: Path(f"{name}.csv") for name in ("patients", "labs", "cells")}
    study = study_from_frames(t.patients, t.labs, t.cells, files, simulated=True)
    study.truth = t.truth
    return study


__all__ = [
    "CALIBRATION_TARGETS",
    "CHUNK",
    "ENDPOINTS",
    "IB_SPLIT_REASON",
    "RESPONSE_COEF",
    "SIMULATED_NOTE",
    "SIMULATOR_FILES",
    "TRIAL_ARMS",
    "VISITS",
    "Chunk",
    "SimulatedTables",
    "calibration_rates",
    "generate_chunks",
    "scaled_arms",
    "simulate",
    "simulate_tables",
    "write_simulation",
]
