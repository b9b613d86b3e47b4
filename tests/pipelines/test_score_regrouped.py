"""A study found not grouped by patient after chunks were written: the output starts again, whole.

The grouped pass learns that rows are out of order only at its end; by then chunks have
been scored and written. The job then reads hash partitions and writes the output again:
a Parquet output must be one readable file with the grouped study's rows.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import private_store, statistical_warnings
from msc_response.config import config_from_dict
from msc_response.pipelines.score import job
from msc_response.pipelines.train import train
from msc_response.simulator import write_simulation as simulate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_parquet_output_written_again_is_whole(tmp_path, trial_dir, fmt):
    cfg = config_from_dict({"name": "regrouped", "model": {"repeats": 2, "bootstrap": 10,
                                                           "candidates": ["lightgbm"]}})  # fmt: skip
    (tmp_path / "store").mkdir()
    with private_store(tmp_path / "store"):
        with statistical_warnings("Riley"):
            summary = train(cfg, trial_dir)
        uri = f"models:/regrouped/{summary['version']}"
        grouped = tmp_path / "grouped"
        simulate(grouped, design="screening", n_patients=200, seed=4, fmt=fmt, h5ad_patients=0)
        late = tmp_path / "late"  # one patient's lab rows moved to the end: known only then
        shutil.copytree(grouped, late)
        read, write = (pd.read_csv, "to_csv") if fmt == "csv" else (pd.read_parquet, "to_parquet")
        labs = read(late / f"labs.{fmt}")
        first = labs["patient_id"] == labs["patient_id"].iloc[0]
        getattr(pd.concat([labs[~first], labs[first]]), write)(late / f"labs.{fmt}", index=False)
        kw = {"explain": 2, "patients_per_chunk": 40, "jobs": 2, "log_to_mlflow": False}
        job.score(uri, grouped, tmp_path / "a.parquet", **kw)
        s = job.score(uri, late, tmp_path / "b.parquet", **kw)
    assert not s["input_grouped_by_patient"]
    a = pd.read_parquet(tmp_path / "a.parquet").set_index("patient_id").sort_index()
    b = pd.read_parquet(tmp_path / "b.parquet").set_index("patient_id").sort_index()
    pd.testing.assert_frame_equal(b, a)
