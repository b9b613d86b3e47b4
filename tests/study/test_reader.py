"""Reading a study in chunks of patients: one pass when grouped, hash partitions otherwise."""

from __future__ import annotations

import pickle

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import write_study
from msc_response.errors import DataError, Problem
from msc_response.study.reader import NotGrouped, RowRange, StudySource, materialise


def _frames(chunks) -> dict[str, pd.DataFrame]:
    chunks = list(chunks)
    out = {}
    for table in ("patients", "labs", "cells"):
        parts = [materialise(getattr(c, table)) for c in chunks]
        out[table] = pa.concat_tables(parts, promote_options="permissive").to_pandas()
    return out


def _study(directory, n=7, fmt="csv", row_group_size=None):
    """``n`` patients with 3 labs and 1 cell row each, grouped by patient."""
    directory.mkdir(parents=True)
    ids = [f"P{i:02d}" for i in range(n)]
    tables = {
        "patients": pd.DataFrame({"patient_id": ids, "sex": "F", "age_years": 50.0}),
        "labs": pd.DataFrame(
            [
                (p, d, "albumin", 3.0 + i / 10, "g/dL")
                for i, p in enumerate(ids)
                for d in (-7, -3, 0)
            ],
            columns=["patient_id", "day", "test", "value", "unit"],
        ),  # fmt: skip
        "cells": pd.DataFrame(
            {
                "patient_id": ids,
                "day": 0,
                "population": "MX1+ monocytes",
                "parent": "monocytes",
                "fraction": 0.2,
            }
        ),  # fmt: skip
    }
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(directory / f"{name}.csv", index=False)
        else:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False),
                           directory / f"{name}.parquet", row_group_size=row_group_size)  # fmt: skip
    return directory


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_grouped_chunks_cover_every_row_once_with_its_row_number(tmp_path, fmt):
    d = _study(tmp_path / "s", fmt=fmt, row_group_size=4)
    chunks = list(StudySource(d).grouped_chunks(3))
    assert len(chunks) == 3  # 7 patients in runs of 3
    if fmt == "parquet":  # the planner hands out row ranges, read by whoever scores the chunk
        assert isinstance(chunks[0].labs, RowRange)
    got = _frames(chunks)
    assert got["patients"]["_row"].tolist() == list(range(1, 8))
    assert got["labs"]["_row"].tolist() == list(range(1, 22))
    first = materialise(chunks[0].labs).to_pandas()
    assert set(first["patient_id"].astype(str)) == {"P00", "P01", "P02"}
    assert got["cells"]["patient_id"].astype(str).tolist() == [f"P{i:02d}" for i in range(7)]


def test_rows_out_of_patient_order_are_detected_and_partitions_take_them(tmp_path):
    d = _study(tmp_path / "s")
    labs = pd.read_csv(d / "labs.csv")
    labs.iloc[::-1].to_csv(d / "labs.csv", index=False)  # patients in reverse order
    source = StudySource(d)
    with pytest.raises(NotGrouped, match="labs.csv is not grouped by patient"):
        list(source.grouped_chunks(3))
    got = _frames(source.partitioned_chunks(3, tmp_path / "parts"))
    assert sorted(got["labs"]["_row"]) == list(range(1, 22))  # every row, its own number
    by_row = got["labs"].set_index("_row")
    assert by_row.loc[1, "patient_id"] == "P06"  # row 1 of the reversed file


def test_an_id_repeating_in_a_later_chunk_is_not_grouped(tmp_path):
    d = _study(tmp_path / "s")
    patients = pd.read_csv(d / "patients.csv")
    patients.loc[6, "patient_id"] = "P00"  # the repeat lands in the third chunk
    patients.to_csv(d / "patients.csv", index=False)
    labs = pd.read_csv(d / "labs.csv")
    labs[labs["patient_id"] != "P06"].to_csv(d / "labs.csv", index=False)
    cells = pd.read_csv(d / "cells.csv")
    cells[cells["patient_id"] != "P06"].to_csv(d / "cells.csv", index=False)
    with pytest.raises(NotGrouped, match="a patient_id repeats"):
        list(StudySource(d).grouped_chunks(3))


def test_row_range_reads_across_row_groups(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"patient_id": [f"P{i}" for i in range(10)], "x": range(10)}), path,
                   row_group_size=3)  # fmt: skip
    t = RowRange(str(path), 2, 8).read().to_pandas()
    assert t["x"].tolist() == list(range(2, 8)) and t["_row"].tolist() == list(range(3, 9))
    assert RowRange(str(path), 4, 4).read().num_rows == 0


def test_missing_columns_are_reported_before_any_chunk(tmp_path):
    d = write_study(tmp_path / "s", labs="patient_id,day,test,value\nP1,0,inr,1.0\n")
    with pytest.raises(DataError, match="labs.csv, column 'unit': required column is missing"):
        StudySource(d)


def test_data_error_survives_pickling_with_its_problems():
    err = DataError([Problem("labs.csv", 3, "value", "value 'x' is not a number")])
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and str(back) == str(err)
