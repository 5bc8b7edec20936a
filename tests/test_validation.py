"""The shared integer check: what it accepts, what it refuses, and its one-line message."""

import math

import pytest

from pyrovae.errors import ConfigError
from pyrovae.validation import integer_at_least


@pytest.mark.parametrize("value, minimum, want", [(3, 1, 3), (3.0, 1, 3), (2, 2, 2), (0, 0, 0)])
def test_accepts_integers_at_least_the_minimum(value, minimum, want):
    got = integer_at_least("k", value, minimum)
    assert got == want and type(got) is int


@pytest.mark.parametrize("value", [0, -1, 2.5, True, False, math.nan, math.inf, "3", None])
def test_refuses_everything_else_with_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^k must be an integer >= 1, got "):
        integer_at_least("k", value)
