"""The intake reads dictionary-coded text without expanding it: checked against the plain path.

The vectorised intake keeps Parquet's dictionary-encoded text as codes
(:func:`~msc_response.study.tables.coded`) and reads a problem row's id and test only where
a problem is. The reference is the straightforward path: every cell a Python string
(``pd.factorize`` of the strings; a CSV read as text). Every kind of bad row must give the
same study, problems, row numbers and messages whatever the layout.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import CELLS, LABS, PATIENTS, write_study
from msc_response.study import StudySource, load_study, study_from_chunk
from msc_response.study.reader import NotGrouped
from msc_response.study.tables import coded

BAD_PATIENTS = PATIENTS + "P5,X,200,HBV,A,1e8,1.5,0\nP6,F,abc,HBV,A,1e8,1,0\n P7,F,50,,A,1e8,1,x\n"
BAD_LABS = LABS + "".join(
    f"{row}\n"
    for row in (
        "P1,1,albumin,38,g/dL",  # implausible (looks like g/L)
        "P1,2,bilirubin,1.0,mg/L",  # unknown unit
        "P1,3,bilirubin,abc,mg/dL",  # not a number
        "P9,0,bilirubin,1.0,mg/dL",  # unknown patient
        " P2,0,albumin,3.1,g/dL",  # id with spaces
        ",0,albumin,3.1,g/dL",  # missing id
        "P1,4,ascites,3,grade",  # implausible grade
        "P1,5,platelets,0.08,10^12/L",  # unknown test changes unit
        "P1,0,bilirubin,3.3,mg/dL",  # conflicting duplicate
        "P1,0,albumin,2.9,g/dL",  # another conflicting duplicate
        "P1,2.5,inr,1.1,ratio",  # day not whole
        "P1,40000,inr,1.1,ratio",  # day out of range
        "P1,x,inr,1.1,ratio",  # day not a number
        "P1,6,,1.1,ratio",  # missing test
        "P1,6,inr,1.1,",  # missing unit
        "P1,6,inr,,ratio",  # missing value
        "P1,6,inr,inf,ratio",  # not finite
        "P2,-1,ferritin,-5,ng/mL",  # negative where it cannot be
    )
)
BAD_CELLS = CELLS + "P1,1,MX1+ monocytes,monocytes,30\nP8,0,MX1+ monocytes,monocytes,0.2\n"


def _as_text(directory, name) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


def _layouts(tmp_path):
    """The bad study as CSV (the reference), Parquet text, and Parquet dictionaries whose
    categories are sorted backwards with unused ones, in row groups of 7 rows."""
    csv = write_study(tmp_path / "csv", BAD_PATIENTS, BAD_LABS, BAD_CELLS)
    out = {"csv": csv}
    for layout in ("text", "dictionary"):
        d = tmp_path / layout
        d.mkdir()
        for name in ("patients", "labs", "cells"):
            df = _as_text(csv, name)
            if layout == "dictionary" and name != "patients":
                for col in df.columns:
                    cats = sorted({*df[col], "never-used"}, reverse=True)
                    df[col] = pd.Categorical(df[col], categories=cats)
            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table, d / f"{name}.parquet", row_group_size=7)
        out[layout] = d
    return out


def test_every_layout_gives_the_references_study_and_problems(tmp_path):
    layouts = _layouts(tmp_path)
    reference = load_study(layouts["csv"])
    rules = set(reference.problems["rule"])
    assert rules >= {"implausible value", "unknown unit", "not a number", "unknown patient",
                     "id with spaces", "missing value", "unit differs", "conflicting duplicate",
                     "day not whole", "day out of range", "not finite", "negative value",
                     "invalid value"}  # fmt: skip
    for layout in ("text", "dictionary"):
        study = load_study(layouts[layout])
        pd.testing.assert_frame_equal(study.patients, reference.patients)
        pd.testing.assert_frame_equal(study.labs, reference.labs)  # categories in the same order
        pd.testing.assert_frame_equal(study.cells, reference.cells)
        assert study.lab_units == reference.lab_units
        problems = study.problems.assign(
            file=study.problems["file"].str.replace(".parquet", ".csv")
        )
        pd.testing.assert_frame_equal(problems, reference.problems)


@pytest.mark.parametrize("layout", ["csv", "dictionary"])
def test_chunks_find_the_same_problems_as_the_whole_study(tmp_path, layout):
    directory = _layouts(tmp_path)[layout]
    whole = load_study(directory).problems.drop(columns="pidx")
    source = StudySource(directory)
    parts = []
    with pytest.raises(NotGrouped):  # the unknown patients' rows follow no patient
        for chunk in source.grouped_chunks(2):
            parts.append(study_from_chunk(chunk, source.paths).problems)
    found = pd.concat(parts, ignore_index=True).drop(columns="pidx")
    keys = ["file", "row", "column", "rule", "message"]
    inside = whole.merge(found[keys], on=keys)  # every problem a chunk found, said as a whole
    assert len(inside) == len(found)


def _factorized(strings: list) -> tuple[np.ndarray, list]:
    codes, uniques = pd.factorize(pd.Series(strings, dtype=object))
    return codes.astype(np.int64), list(uniques)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: pa.chunked_array([pa.array(s[:9]), pa.array(s[9:])]),
        lambda s: pa.chunked_array(
            [pa.array(s[:9]).dictionary_encode(), pa.array(s[9:]).dictionary_encode()]
        ),  # fmt: skip
        # a dictionary sorted backwards, with unused and repeated values and a null entry
        lambda s: pa.DictionaryArray.from_arrays(
            pa.array(
                [
                    [*sorted(set(filter(None, s)), reverse=True), "x", None, "x"].index(v)
                    if v is not None
                    else None
                    for v in s
                ],
                pa.int32(),
            ),
            pa.array([*sorted(set(filter(None, s)), reverse=True), "x", None, "x"]),
        ),  # fmt: skip
    ],
    ids=["text", "dictionaries per chunk", "odd dictionary"],
)
def test_codes_are_the_factorized_strings(build):
    rng = np.random.default_rng(3)
    strings = [None if k == 0 else f"id-{k}" for k in rng.integers(0, 6, 40)]
    strings[0] = "x"
    codes, categories = coded(build(strings))
    expected_codes, expected_categories = _factorized(strings)
    assert list(categories) == expected_categories
    np.testing.assert_array_equal(codes, expected_codes)


@pytest.mark.parametrize(
    ("rows", "start", "stop"),
    [
        (["a", "a", "b", "c", "b", "d", "d", "e"], 0, 8),  # the whole array: in order
        (["a", "a", "b", "c", "d", "c", "e"], 2, 7),  # a slice from inside: still in order
        (["a", "b", "c", "a", "d", "b", "e", "f"], 3, 8),  # a value first seen before the slice
        (["t1", "t2", "t3", "t1", "t2", "t3", "t2"], 0, 7),  # repeating tests
        (["t1", "t2", "t3", "t1", "t2", "t3", "t2"], 1, 7),  # ... from the 2nd row (t1 seen late)
    ],
)
def test_codes_of_a_slice_of_a_dictionary_are_the_factorized_strings(rows, start, stop):
    # what a chunk's row range of a Parquet row group looks like: the row group's dictionary,
    # a slice of its rows (the quick path when their codes are in order of first appearance)
    sliced = pa.array(rows).dictionary_encode().slice(start, stop - start)
    codes, categories = coded(sliced)
    expected_codes, expected_categories = _factorized(rows[start:stop])
    assert list(categories) == expected_categories
    np.testing.assert_array_equal(codes, expected_codes)


#: The bad study's problems as main gave them (bc5f0d3) before the validators were rewritten
#: per category and per (test, unit) pair (issue 25): file, row, column, patient, rule, message.
PINNED_PROBLEMS = [
    ('patients.csv', 5, 'sex', 'P5', 'invalid value',
     "value 'X' must be 'F' or 'M'"),
    ('patients.csv', 5, 'age_years', 'P5', 'invalid value',
     'value 200.0 outside 0-120 years'),
    ('patients.csv', 5, 'n_infusions', 'P5', 'invalid value',
     'value 1.5 must be a whole number 0-20'),
    ('patients.csv', 6, 'age_years', 'P6', 'not a number',
     "value 'abc' is not a number"),
    ('patients.csv', 7, 'patient_id', ' P7', 'id with spaces',
     "patient_id ' P7' has leading or trailing spaces"),
    ('patients.csv', 7, 'interval_days', ' P7', 'not a number',
     "value 'x' is not a number"),
    ('labs.csv', 2, 'value', 'P1', 'conflicting duplicate',
     "conflicting duplicate of test 'bilirubin' on day 0 for the same patient (values differ)"),
    ('labs.csv', 3, 'value', 'P1', 'conflicting duplicate',
     "conflicting duplicate of test 'albumin' on day 0 for the same patient (values differ)"),
    ('labs.csv', 48, 'value', 'P1', 'implausible value',
     'albumin value 38.0 g/dL is not plausible (expected within 0.5-7 g/dL); a value of this size looks like g/L, not g/dL'),
    ('labs.csv', 49, 'unit', 'P1', 'unknown unit',
     "unknown unit 'mg/L' for test 'bilirubin'; accepted: ['mg/dL', 'umol/L']"),
    ('labs.csv', 50, 'value', 'P1', 'not a number',
     "value 'abc' is not a number"),
    ('labs.csv', 51, 'patient_id', 'P9', 'unknown patient',
     "patient_id 'P9' is not in the patients table"),
    ('labs.csv', 52, 'patient_id', ' P2', 'id with spaces',
     "patient_id ' P2' has leading or trailing spaces"),
    ('labs.csv', 53, 'patient_id', '', 'missing value',
     'patient_id is missing'),
    ('labs.csv', 54, 'value', 'P1', 'implausible value',
     'ascites value 3.0 grade is not plausible (expected a whole grade 0-2)'),
    ('labs.csv', 55, 'unit', 'P1', 'unit differs',
     "test 'platelets' is in '10^12/L' here, but in '10^9/L' in its first row; use one unit per test"),
    ('labs.csv', 56, 'value', 'P1', 'conflicting duplicate',
     "conflicting duplicate of test 'bilirubin' on day 0 for the same patient (values differ)"),
    ('labs.csv', 57, 'value', 'P1', 'conflicting duplicate',
     "conflicting duplicate of test 'albumin' on day 0 for the same patient (values differ)"),
    ('labs.csv', 58, 'day', 'P1', 'day not whole',
     'day 2.5 is not a whole number of days'),
    ('labs.csv', 59, 'day', 'P1', 'day out of range',
     'day 40000.0 is outside -36525..36525 (100 years either side of the first infusion)'),
    ('labs.csv', 60, 'day', 'P1', 'not a number',
     "value 'x' is not a number"),
    ('labs.csv', 61, 'test', 'P1', 'missing value',
     'test is missing'),
    ('labs.csv', 62, 'unit', 'P1', 'missing value',
     'unit is missing'),
    ('labs.csv', 63, 'value', 'P1', 'missing value',
     'value is missing'),
    ('labs.csv', 64, 'value', 'P1', 'not finite',
     'value inf is not a finite number'),
    ('labs.csv', 65, 'value', 'P2', 'negative value',
     'ferritin value -5.0 is negative; a ferritin value cannot be'),
    ('cells.csv', 5, 'fraction', 'P1', 'implausible value',
     'fraction 30.0 is outside 0-1; looks like a percentage'),
    ('cells.csv', 6, 'patient_id', 'P8', 'unknown patient',
     "patient_id 'P8' is not in the patients table"),
]  # fmt: skip
#: SHA-256 of the bad study's usable tables (``DataFrame.to_csv(index=False)``), from the same run.
PINNED_TABLES = {
    "patients": "4d3013e8c9fc57b8266cd5f4a46aa3815816656451b1a2e946675602af1f95bc",
    "labs": "0ec6bc38f050ba935da61673b9ca54ea802c4cbd3de97c76178bde5003fafdb6",
    "cells": "b7b1e1b07c73f383d2e49434798f971050589cc1b49ca9d063528a3433c2a595",
}


@pytest.mark.parametrize("layout", ["csv", "text", "dictionary"])
def test_the_bad_study_gives_the_problems_and_rows_it_gave_before(tmp_path, layout):
    study = load_study(_layouts(tmp_path)[layout])
    suffix = ".csv" if layout == "csv" else ".parquet"
    expected = [(f.replace(".csv", suffix), *rest) for f, *rest in PINNED_PROBLEMS]
    got = [tuple(r) for r in study.problems[["file", "row", "column", "patient_id", "rule",
                                             "message"]].itertuples(index=False)]  # fmt: skip
    assert got == expected
    for name, digest in PINNED_TABLES.items():
        table = getattr(study, name).to_csv(index=False).encode()
        assert hashlib.sha256(table).hexdigest() == digest, name
