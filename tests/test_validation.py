"""The typed checks every input goes through: what each accepts, what it refuses, and its one-line message."""

import math

import pytest
import torch

from pyrovae.errors import ConfigError, DataError, UnknownNameError
from pyrovae.validation import device, finite_matrix, integer_at_least, out_path, real, seed, text, widths


@pytest.mark.parametrize("value, minimum, want", [(3, 1, 3), (3.0, 1, 3), (2, 2, 2), (0, 0, 0)])
def test_accepts_integers_at_least_the_minimum(value, minimum, want):
    got = integer_at_least("k", value, minimum)
    assert got == want and type(got) is int


@pytest.mark.parametrize("value", [0, -1, 2.5, True, False, math.nan, math.inf, "3", None])
def test_refuses_everything_else_with_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^k must be an integer >= 1, got "):
        integer_at_least("k", value)


# -- the typed checks of every input (issue 13, items 5-8) ------------------------------------
@pytest.mark.parametrize("value", ["0.1", True, None, math.nan, -math.inf, [1.0]])
def test_real_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(ConfigError, match=r"^x must be a finite number >= 0, got "):
        real("x", value, 0.0)


def test_real_accepts_and_converts_numbers():
    assert real("x", 2, 0.0) == 2.0 and type(real("x", 2, 0.0)) is float
    with pytest.raises(ConfigError, match="> 0"):
        real("x", 0.0, 0.0, strict=True)


@pytest.mark.parametrize("value", [-1, 2**32, 99999999999999, 1.5, "3", True])
def test_seeds_are_integers_below_two_to_the_32(value):
    with pytest.raises(ConfigError, match=r"^seed must be an integer"):
        seed("seed", value)
    assert seed("seed", 2**32 - 1) == 2**32 - 1 and seed("seed", 0) == 0


def test_integer_refuses_overflowing_and_too_large_values():
    with pytest.raises(ConfigError, match="got inf"):
        integer_at_least("n", float("1e400"))
    with pytest.raises(ConfigError, match="<= 10"):
        integer_at_least("n", 11, 1, 10)


@pytest.mark.parametrize("value", ["abc", [0], [4, -1], [2.5], 5, []])
def test_widths_refuse_zero_width_layers_and_non_lists(value):
    with pytest.raises(ConfigError):
        widths("encoder_widths", value)
    assert widths("decoder_widths", [], empty=True) == [] and widths("w", (4.0, 2)) == [4, 2]


def test_text_and_out_path_refuse_empty_and_non_strings():
    for bad in ("", "  ", 5, None):
        with pytest.raises(ConfigError):
            text("device", bad)
        with pytest.raises(ConfigError, match="--out must name a directory"):
            out_path("--out", bad)
    with pytest.raises(UnknownNameError, match="unknown colour 'red'; known: blue"):
        text("c", "red", ["blue"], "colour")


def test_finite_matrix_refuses_nan_and_the_wrong_width():
    with pytest.raises(DataError, match="NaN"):
        finite_matrix("x", torch.tensor([[math.nan]]), 1)
    with pytest.raises(DataError, match="2 columns"):
        finite_matrix("y", torch.zeros(3, 1), 2)


@pytest.mark.parametrize("value, want", [(None, "cpu"), ("cpu", "cpu"), (torch.device("cpu"), "cpu")])
def test_device_reads_cpu_spellings(value, want):
    assert device("--device", value) == want


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cuda:", "mps", "", 3])
def test_device_refuses_other_names_with_one_line(value):
    with pytest.raises(ConfigError, match=r"^--device must"):
        device("--device", value)


def test_device_refuses_missing_cuda_unless_reading_a_stored_config():
    assert device("device", "cuda:1", available=False) == "cuda:1"
    if torch.cuda.is_available():
        assert device("device", "cuda") == "cuda"
    else:
        with pytest.raises(ConfigError, match=r"^device cuda:1: CUDA is not available on this machine$"):
            device("device", "cuda:1")
