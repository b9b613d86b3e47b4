"""Hash parts by patient: written by ``simulate``/``import --parts``, declared in the footers,
read as an ordinary part directory by the local reader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from export_helpers import SDTM_MAPPING, export_sdtm
from msc_response.cli import app
from msc_response.errors import ConfigError
from msc_response.simulator import write_simulation as simulate
from msc_response.study import load_study, partitioning

runner = CliRunner()


def test_every_row_lies_in_its_patients_part_which_each_footer_declares(tmp_path):
    simulate(tmp_path / "s", design="screening", n_patients=700, seed=5, fmt="parquet",
             h5ad_patients=0, parts=3)  # fmt: skip
    meta = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert meta["parts"] == 3
    for table in ("patients", "labs", "cells"):
        files = sorted((tmp_path / "s" / table).iterdir())
        assert [f.name for f in files] == [partitioning.part_name(k) for k in range(3)]
        for k, f in enumerate(files):
            pf = pq.ParquetFile(f)
            assert partitioning.declared(pf.schema_arrow.metadata) == (k, 3)
            ids = pf.read(columns=["patient_id"]).column("patient_id")
            assert len(ids) > 0 and len(partitioning.misplaced(ids, k, 3)) == 0
            assert len(partitioning.misplaced(ids, (k + 1) % 3, 3)) == len(ids)


def test_parts_hold_the_same_study_as_single_files(tmp_path):
    """Same rows, a patient's rows together in part order: the local reader reads it whole."""
    kw = {"design": "screening", "n_patients": 500, "seed": 8, "fmt": "parquet", "h5ad_patients": 0}
    simulate(tmp_path / "one", **kw)
    simulate(tmp_path / "parts", parts=4, **kw)

    def rows(df):  # as text: categories and their order differ between the two files
        text = df.astype(str)
        return text.sort_values(list(text.columns)).reset_index(drop=True)

    for name in ("patients", "labs", "cells"):
        one = pd.read_parquet(tmp_path / "one" / f"{name}.parquet")
        parts = pd.read_parquet(tmp_path / "parts" / name)
        pd.testing.assert_frame_equal(rows(one), rows(parts))
        assert not np.array_equal(one["patient_id"], parts["patient_id"])  # in part order
    one, parts = load_study(tmp_path / "one"), load_study(tmp_path / "parts")
    assert len(one.patients) == len(parts.patients) == 500 and len(one.labs) == len(parts.labs)
    assert parts.problems.empty


def test_the_hash_strips_ids_as_the_reader_does_and_is_stable():
    ids = pa.array(["SIM-0000013", " SIM-0000013", "SIM-0000013\u00a0", None, ""])
    h = partitioning.patient_hash(ids)
    assert h[0] == h[1] == h[2] and h[3] == h[4] and h[0] != h[4]
    # the same from a dictionary column, chunked (as Parquet files are read)
    as_read = pa.chunked_array([ids[:2].dictionary_encode(), ids[2:].dictionary_encode()])
    assert np.array_equal(partitioning.patient_hash(as_read), h)
    assert np.array_equal(partitioning.patient_hash(pa.array([7, None])),
                          partitioning.patient_hash(pa.array(["7", ""])))  # fmt: skip
    # fixed by the scheme: a change of hash would move every patient to another part
    assert partitioning.patient_hash(pa.array(["SIM-0000001"]))[0] == np.uint64(
        pd.util.hash_array(np.array(["SIM-0000001"], dtype=object), hash_key="0123456789123456")[0]
    )


@pytest.mark.parametrize(
    "metadata",
    [None, {}, {b"other": b"1"}, {partitioning.KEY: "not json"},
     {partitioning.KEY: json.dumps({"scheme": "other/v9", "part": 0, "parts": 2})},
     {partitioning.KEY: json.dumps({"scheme": partitioning.SCHEME, "part": 2, "parts": 2})},
     {partitioning.KEY: json.dumps({"scheme": partitioning.SCHEME, "part": "0", "parts": 2})}],
)  # fmt: skip
def test_a_footer_declaring_nothing_known_is_not_trusted(metadata):
    assert partitioning.declared(metadata) is None


def test_parts_need_parquet_and_a_whole_number(tmp_path):
    with pytest.raises(ConfigError, match="parts: part files are Parquet"):
        simulate(tmp_path / "a", design="screening", n_patients=50, parts=2)
    with pytest.raises(ConfigError, match="parts: expected a whole number >= 0, got -1"):
        simulate(tmp_path / "b", design="screening", n_patients=50, fmt="parquet", parts=-1)
    result = runner.invoke(app, ["simulate", "--design", "screening", "--n-patients", "50",
                                 "--parts", "2", "--out", str(tmp_path / "c")])  # fmt: skip
    assert result.exit_code == 2 and "--parts: part files are Parquet" in result.output


def test_a_previous_output_with_parts_is_replaced_by_single_files_and_back(tmp_path):
    out = tmp_path / "s"
    kw = {"design": "screening", "n_patients": 60, "seed": 1, "fmt": "parquet", "h5ad_patients": 0}
    simulate(out, parts=2, **kw)
    simulate(out, **kw)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".parquet") == [
        "cells.parquet", "labs.parquet", "patients.parquet"]  # fmt: skip
    assert not (out / "labs").exists()
    simulate(out, parts=2, **kw)
    assert (out / "labs").is_dir() and not (out / "labs.parquet").exists()


def test_import_writes_parts_and_replaces_its_earlier_output(exportable_trial, tmp_path):
    src = export_sdtm(exportable_trial, tmp_path / "sdtm")
    out = tmp_path / "imported"
    args = ["import", str(src), "--from", "sdtm", "--out", str(out), "--mapping", str(SDTM_MAPPING),
            "--format", "parquet", "--parts", "2"]  # fmt: skip
    for _ in range(2):  # the second run replaces the first (its part directories included)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    report = json.loads((out / "import_report.json").read_text())
    assert report["files_written"] == ["patients/", "labs/", "cells/"]
    for table in ("patients", "labs"):
        for k, f in enumerate(sorted((out / table).iterdir())):
            pf = pq.ParquetFile(f)
            assert partitioning.declared(pf.schema_arrow.metadata) == (k, 2)
            assert len(partitioning.misplaced(pf.read().column("patient_id"), k, 2)) == 0
    whole = load_study(out)
    assert len(whole.patients) == report["written"]["patients"]
    assert len(whole.labs) == report["written"]["lab_rows"]
