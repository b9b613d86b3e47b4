import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msc_response import units


@pytest.mark.parametrize(
    ("test", "si_unit", "factor"),
    [("bilirubin", "umol/L", 17.1), ("creatinine", "umol/L", 88.4), ("albumin", "g/L", 10.0)],
)
def test_conversion_factors(test, si_unit, factor):
    assert units.convert(1.0, test, units.CANONICAL_UNITS[test], si_unit) == pytest.approx(factor)
    assert units.convert(factor, test, si_unit) == pytest.approx(1.0)


def test_sodium_meq_is_mmol():
    assert units.convert(135.0, "sodium", "mEq/L") == 135.0


@given(x=st.floats(0.01, 1e4), test=st.sampled_from(["bilirubin", "creatinine", "albumin"]))
def test_round_trip(x, test):
    si = {"bilirubin": "umol/L", "creatinine": "umol/L", "albumin": "g/L"}[test]
    back = units.convert(units.convert(x, test, units.CANONICAL_UNITS[test], si), test, si)
    assert back == pytest.approx(x, rel=1e-12)


def test_unknown_unit_names_test_and_unit():
    with pytest.raises(units.UnitError, match=r"'mg/L'.*'bilirubin'"):
        units.convert(1.0, "bilirubin", "mg/L")
    with pytest.raises(units.UnitError, match="'ferritin'"):
        units.factor_to_canonical("ferritin", "ng/mL")


def test_vectorised_factors_flag_unaccepted_units_and_pass_unknown_tests():
    tests = pd.Series(["bilirubin", "albumin", "albumin", "platelets", "pta"])
    unit_s = pd.Series(["umol/L", "g/L", "mg/dL", "10^9/L", "%"])
    f = units.factors_for(tests, unit_s)
    assert f[0] == pytest.approx(1 / 17.1)
    assert f[1] == pytest.approx(0.1)
    assert np.isnan(f[2])  # albumin in mg/dL is not accepted
    assert f[3] == 1.0 and f[4] == 1.0  # unknown tests keep their unit
