"""The work on one chunk of patients, shared by both engines of the scoring job.

The local engine (:mod:`.job`) runs :func:`score_chunk` in worker processes; the Spark
engine (:mod:`.spark`) in its executors. Both report a :class:`JobRun`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...features import features_from_study
from ...io import encode_chunk
from ...modeling.benefit import with_predicted_benefit
from ...modeling.fitted import LoadedModel
from ...modeling.predict import predict_features
from ...study import StudyChunk, study_from_chunk


@dataclass
class Task:
    """What a worker needs to score a chunk; plain data, sent with every chunk.

    The model file is read once per chunk (milliseconds), so no process keeps a cache.
    """

    model: LoadedModel
    paths: dict[str, str]  # the source of each table
    cells_derived: bool
    explain: int
    regimens: bool
    fmt: str
    benefit: dict | None = None  # an exported benefit model (``score --benefit-model``)


@dataclass
class ChunkResult:
    encoded: object  # the chunk's output rows, encoded for the writer (None: nobody scored)
    n_scored: int
    rejected: pd.DataFrame
    problems: pd.DataFrame
    n_patients: int
    tests: set[str]
    has_cells: bool
    seconds: dict[str, float]
    X: pd.DataFrame | None = None  # features, when another engine predicts
    ids: np.ndarray | None = None
    n_predicted_responders: int = 0


def with_model_columns(table: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    """The model's name, version, URI and status after ``patient_id`` (categorical: free to
    encode), then whether it was trained on simulated data: what travels with each prediction."""
    n = len(table)
    for k, (name, value) in enumerate((("model_name", model.name), ("model_version", model.version),
                                       ("model_uri", model.uri), ("model_status", model.status))):  # fmt: skip
        table.insert(
            1 + k, name, pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])
        )
    table.insert(5, "model_trained_on_simulated_data", np.full(n, model.trained_on_simulated_data))
    return table


def score_chunk(task: Task, chunk: StudyChunk, *, predict: bool = True) -> ChunkResult:
    """Read, validate, featurise, predict, explain and encode one chunk.

    With ``predict=False`` the result carries the features instead (for the Spark engine).
    Bad rows exclude their patient here; ``strict`` turns any of them into an error at
    the end of the job, once every chunk's problems are known.
    """
    t, cpu = time.perf_counter(), time.process_time()
    model = task.model
    seconds: dict[str, float] = {}  # read_s + type_s + validate_s = read_validate_s
    study = study_from_chunk(chunk, {k: Path(v) for k, v in task.paths.items()},
                             cells_derived=task.cells_derived,
                             reference_units=model.spec.lab_units, seconds=seconds)  # fmt: skip
    seconds["read_validate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    fs = features_from_study(
        study, model.spec.config, labels=False, bad_rows="exclude", seconds=seconds
    )  # window_s: of features_s
    X = fs.table.reindex(columns=model.feature_columns).astype(float)  # absent test: NaN
    ids = fs.table["patient_id"].to_numpy()
    seconds["features_s"] = time.perf_counter() - t
    result = ChunkResult(
        None, 0, fs.exclusions, fs.problems, len(study.patients),
        {str(c) for c in study.labs["test"].cat.categories},  # tests the study reports, usable or not
        study.cells is not None and len(study.cells) > 0, seconds,
    )  # fmt: skip
    if not predict:
        result.X, result.ids = X, ids
    elif not X.empty:
        t = time.perf_counter()
        table = predict_features(
            model.fitted, X, ids, model.threshold, explain=task.explain, regimens=task.regimens
        )
        if task.benefit is not None:  # an effect, from a model fitted on a randomised study
            table = with_predicted_benefit(table, fs.table, task.benefit)
        seconds["predict_s"] = time.perf_counter() - t
        t = time.perf_counter()
        result.encoded = encode_chunk(with_model_columns(table, model), task.fmt)
        result.n_scored = len(table)
        result.n_predicted_responders = int(table["predicted_response"].sum())
        seconds["encode_s"] = time.perf_counter() - t
    seconds["cpu_s"] = time.process_time() - cpu  # this process's CPU: what load does not inflate
    return result


@dataclass
class JobRun:
    """What an engine reports once every patient is scored or rejected (outputs in place)."""

    model: LoadedModel
    counts: dict
    flow: dict  # patient_flow() of the rejected patients and the row problems
    has_problems: bool
    input_sha256: dict
    timings: dict
    details: dict  # engine-specific facts for the summary (workers, grouping, ...)
    data_simulated: bool | None = None  # None: read ``simulation.json`` from the local study
    write_summary: Callable[[dict], object] | None = None  # None: JSON beside the local ``out``
