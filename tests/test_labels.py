import numpy as np
import pytest

from msc_response.labels import endpoint_change, response


def test_decrease_and_increase():
    assert response([-2, -1, -0.5, 0, 1], "decrease", 1).tolist() == [1, 1, 0, 0, 0]
    assert response([0.1, 0.05, -0.2], "increase", 0.1).tolist() == [1, 0, 0]


def test_binary_noise_does_not_flip_a_label():
    # 3.1 - 3.0 is 0.10000000000000009 or 0.0999999... depending on the path
    assert response(endpoint_change(3.0, 3.1), "increase", 0.1).tolist() == 1.0


def test_missing_change_is_missing_label():
    out = response([np.nan, -1], "decrease", 1)
    assert np.isnan(out[0]) and out[1] == 1


@pytest.mark.parametrize(
    ("direction", "min_change"), [("down", 1), ("decrease", 0), ("increase", -1)]
)
def test_bad_parameters(direction, min_change):
    with pytest.raises(ValueError, match="direction|min_change"):
        response([1.0], direction, min_change)
