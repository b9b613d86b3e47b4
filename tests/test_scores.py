"""Scores against every worked value and convention in docs/domain.md."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msc_response import scores
from msc_response.config import ENDPOINT_SCORES
from msc_response.feature_labels import SCORE_LABELS
from msc_response.features.build import ENDPOINT_TESTS


def one(x):
    return float(np.asarray(x)[()])


@pytest.mark.parametrize(
    ("bili", "inr", "cr", "na", "expected_meld", "expected_meld_na"),
    [
        (4.2, 1.2, 1.9, None, 20, None),
        (3.0, 1.8, 2.0, 128, 24, 29),
        (1.5, 1.1, 2.7, 135, 19, 20),
        (0.5, 0.8, 0.6, 140, 6, 6),
    ],
)
def test_meld_and_meld_na_worked_values(bili, inr, cr, na, expected_meld, expected_meld_na):
    assert one(scores.meld(bili, inr, cr)) == expected_meld
    if na is not None:
        assert one(scores.meld_na(bili, inr, cr, na)) == expected_meld_na


@pytest.mark.parametrize(
    ("args", "female", "expected"),
    [
        ((2.5, 1.5, 1.2, 135, 3.0), 0, 18),
        ((2.5, 1.5, 1.2, 135, 3.0), 1, 19),
        ((3.0, 1.8, 2.0, 128, 2.8), 1, 31),
        ((0.4, 0.9, 0.5, 141, 4.1), 0, 6),
    ],
)
def test_meld3_worked_values(args, female, expected):
    assert one(scores.meld3(*args, female=female)) == expected


def test_child_pugh_worked_value():
    score = scores.child_pugh(3.2, 2.6, 2.0, 1, 1)
    assert one(score) == 12
    assert scores.child_pugh_class(score)[()] == "C"


@pytest.mark.parametrize(
    ("func", "below", "at_low", "at_high", "above"),
    [
        (scores.bilirubin_points, 1.99, 2.0, 3.0, 3.01),
        (scores.inr_points, 1.69, 1.7, 2.3, 2.31),
        (scores.pt_points, 3.9, 4.0, 6.0, 6.1),
    ],
)
def test_band_boundaries_fall_in_the_middle_band(func, below, at_low, at_high, above):
    assert list(func(np.array([below, at_low, at_high, above]))) == [1, 2, 2, 3]


def test_albumin_bands_lower_is_worse():
    assert list(scores.albumin_points(np.array([3.51, 3.5, 2.8, 2.79]))) == [1, 2, 2, 3]


def test_cholestatic_bilirubin_bands():
    b = np.array([3.99, 4.0, 10.0, 10.01])
    assert list(scores.bilirubin_points(b, cholestatic=True)) == [1, 2, 2, 3]
    assert list(scores.bilirubin_points(b, cholestatic=False)) == [3, 3, 3, 3]
    mixed = scores.bilirubin_points(np.array([3.5, 3.5]), cholestatic=np.array([True, False]))
    assert list(mixed) == [1, 3]


def test_grades_map_to_points():
    assert list(scores.ascites_points(np.array([0, 1, 2]))) == [1, 2, 3]
    assert list(scores.encephalopathy_points(np.array([0, 1, 2, 3, 4]))) == [1, 2, 2, 3, 3]


def test_child_pugh_class_boundaries():
    assert list(scores.child_pugh_class(np.array([5, 6, 7, 9, 10, 15]))) == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "C",
    ]
    assert scores.child_pugh_class(np.array([np.nan]))[0] is None


def test_pt_used_only_where_inr_is_missing():
    # INR 1.5 (1 point) wins over PT 7 s over control (3 points)
    with_inr = scores.child_pugh(1.0, 4.0, 1.5, 0, 0, pt=19.0, pt_control=12.0)
    without = scores.child_pugh(1.0, 4.0, np.nan, 0, 0, pt=19.0, pt_control=12.0)
    assert one(with_inr) == 5
    assert one(without) == 7


def test_missing_input_gives_missing_score_for_that_row_only():
    cp = scores.child_pugh([1.0, np.nan], [4.0, 4.0], [1.0, 1.0], [0, 0], [0, 0])
    assert cp[0] == 5 and np.isnan(cp[1])
    m = scores.meld([1.0, 2.0], [1.0, np.nan], [1.0, 1.0])
    assert m[0] == 6 and np.isnan(m[1])
    m3 = scores.meld3(
        [2.0, 2.0], [1.2, 1.2], [1.0, 1.0], [135, 135], [3.0, 3.0], female=[1, np.nan]
    )
    assert not np.isnan(m3[0]) and np.isnan(m3[1])


def test_meld_floors_caps_and_dialysis():
    # values below 1.0 are floored to 1.0
    assert one(scores.meld(0.3, 0.8, 0.4)) == one(scores.meld(1.0, 1.0, 1.0)) == 6
    # creatinine capped at 4.0, and dialysis sets it to 4.0
    assert one(scores.meld(2.0, 1.5, 9.0)) == one(scores.meld(2.0, 1.5, 4.0))
    assert one(scores.meld(2.0, 1.5, 1.1, dialysis=1)) == one(scores.meld(2.0, 1.5, 4.0))
    assert one(scores.meld(2.0, 1.5, 1.1, dialysis=0)) == one(scores.meld(2.0, 1.5, 1.1))
    # range 6-40
    assert one(scores.meld(60.0, 12.0, 4.0)) == 40


def test_meld_na_clamps_and_threshold():
    # sodium below 125 counts as 125, above 137 as 137
    assert one(scores.meld_na(3.0, 1.8, 2.0, 110)) == one(scores.meld_na(3.0, 1.8, 2.0, 125))
    assert one(scores.meld_na(3.0, 1.8, 2.0, 145)) == one(scores.meld(3.0, 1.8, 2.0))
    # MELD <= 11: no sodium adjustment
    low = (1.0, 1.3, 1.2)
    assert one(scores.meld(*low)) <= 11
    assert one(scores.meld_na(*low, 125)) == one(scores.meld(*low))


def test_meld3_clamps_and_dialysis():
    base = dict(bilirubin=2.0, inr=1.4, sodium=135.0, albumin=3.0, female=0)
    assert one(scores.meld3(creatinine=5.0, **base)) == one(scores.meld3(creatinine=3.0, **base))
    assert one(scores.meld3(creatinine=1.2, dialysis=1, **base)) == one(
        scores.meld3(creatinine=3.0, **base)
    )
    lo_alb = dict(base, albumin=1.0)
    assert one(scores.meld3(creatinine=1.2, **lo_alb)) == one(
        scores.meld3(creatinine=1.2, **dict(base, albumin=1.5))
    )
    hi_alb = dict(base, albumin=4.5)
    assert one(scores.meld3(creatinine=1.2, **hi_alb)) == one(
        scores.meld3(creatinine=1.2, **dict(base, albumin=3.5))
    )


def test_round_half_up_is_not_bankers_rounding():
    assert list(scores.round_half_up(np.array([0.5, 1.5, 2.5, 2.4999]))) == [1, 2, 3, 2]
    assert float(scores.round_half_up(1.95, 1)) == 2.0
    assert float(scores.round_half_up(2.25, 1)) == 2.3


labs = st.floats(min_value=0.1, max_value=40.0, allow_nan=False)
inrs = st.floats(min_value=0.8, max_value=8.0, allow_nan=False)
factors = st.floats(min_value=1.0, max_value=5.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    bili=labs,
    inr=inrs,
    cr=labs,
    na=st.floats(120, 145),
    k=factors,
    which=st.sampled_from([0, 1, 2]),
)
def test_meld_never_improves_when_a_lab_worsens(bili, inr, cr, na, k, which):
    worse = [bili, inr, cr]
    worse[which] *= k
    assert one(scores.meld(*worse)) >= one(scores.meld(bili, inr, cr))
    assert one(scores.meld_na(*worse, na)) >= one(scores.meld_na(bili, inr, cr, na))


@settings(max_examples=300, deadline=None)
@given(
    bili=labs,
    alb=st.floats(1.0, 5.0),
    inr=inrs,
    asc=st.integers(0, 2),
    enc=st.integers(0, 4),
    which=st.sampled_from(["bili", "alb", "inr", "asc", "enc"]),
    step=st.floats(0.0, 3.0),
    grade_step=st.integers(0, 2),
)
def test_child_pugh_never_improves_when_a_component_worsens(
    bili, alb, inr, asc, enc, which, step, grade_step
):
    base = dict(bili=bili, alb=alb, inr=inr, asc=asc, enc=enc)
    worse = dict(base)
    if which == "alb":
        worse["alb"] = alb - step
    elif which in ("asc", "enc"):
        worse[which] = min(base[which] + grade_step, 2 if which == "asc" else 4)
    else:
        worse[which] = base[which] + step
    cp = lambda d: one(scores.child_pugh(d["bili"], d["alb"], d["inr"], d["asc"], d["enc"]))  # noqa: E731
    assert cp(worse) >= cp(base)


def test_every_table_keyed_by_score_names_every_score():
    # scores.SCORES names the scores once; the tables of per-score facts elsewhere must follow it
    assert set(SCORE_LABELS) == set(scores.SCORES)
    assert set(ENDPOINT_TESTS) == set(ENDPOINT_SCORES) == {*scores.SCORES, "albumin"}
