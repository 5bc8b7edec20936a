"""Dataset validation and the CSV loader (small fixture files written to tmp_path)."""

from __future__ import annotations

import pytest
import torch

from pyrovae.data import Dataset, load_csv, two_moon
from pyrovae.errors import DataError


# -- Dataset ----------------------------------------------------------------------
def test_dataset_basic():
    d = Dataset("d", torch.zeros(5, 3), torch.ones(5))  # a vector y becomes one column
    assert len(d) == 5 and d.condition_dim == 3 and d.observed_dim == 1 and d.observed.shape == (5, 1)
    assert d.condition.dtype == torch.get_default_dtype()


def test_dataset_unconditional_has_zero_x_columns():
    d = Dataset("d", torch.zeros(4, 0), torch.randn(4, 2))
    assert d.condition_dim == 0 and d.observed_dim == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["x", "y"])
def test_dataset_rejects_non_finite(bad, where):
    x, y = torch.zeros(4, 1), torch.zeros(4, 2)
    (x if where == "x" else y)[2, 0] = bad
    with pytest.raises(DataError):
        Dataset("d", x, y)


@pytest.mark.parametrize(
    "x, y",
    [
        (torch.zeros(4, 1), torch.zeros(5, 2)),  # row counts differ
        (torch.zeros(4, 1, 1), torch.zeros(4, 2)),  # x is 3-D
        (torch.zeros(4, 1), torch.zeros(4, 2, 2)),  # y is 3-D
        (torch.zeros(1, 1), torch.zeros(1, 2)),  # fewer than 2 rows
        (torch.zeros(4, 1), torch.zeros(4, 0)),  # no response column
    ],
)
def test_dataset_rejects_wrong_shapes(x, y):
    with pytest.raises(DataError):
        Dataset("d", x, y)


# -- load_csv ---------------------------------------------------------------------
def test_csv_round_trip(tmp_path):
    d = two_moon(n=60, tau=0.1, seed=0)
    path = d.to_csv(tmp_path / "moons.csv")
    assert path.read_text().splitlines()[0] == "x1,y1,y2"
    back = load_csv(path)
    assert back.name == "moons" and back.condition_dim == 1 and back.observed_dim == 2
    torch.testing.assert_close(back.condition, d.condition, rtol=0, atol=0)
    torch.testing.assert_close(back.observed, d.observed, rtol=0, atol=0)


def test_csv_round_trip_unconditional(tmp_path):
    d = Dataset("u", torch.zeros(6, 0), torch.randn(6, 3))
    back = load_csv(d.to_csv(tmp_path / "u.csv"))
    assert back.condition.shape == (6, 0)
    torch.testing.assert_close(back.observed, d.observed, rtol=0, atol=0)


def test_csv_without_y_names_uses_last_columns(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    d = load_csv(path)
    assert d.condition.tolist() == [[1, 2], [4, 5], [7, 8]] and d.observed.tolist() == [[3], [6], [9]]
    d2 = load_csv(path, y_columns=2)
    assert d2.condition.tolist() == [[1], [4], [7]] and d2.observed.tolist() == [[2, 3], [5, 6], [8, 9]]


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_csv(tmp_path / "nope.csv")


def test_csv_nan(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("x1,y1\n1,2\n3,nan\n5,6\n")
    with pytest.raises(DataError, match="NaN"):
        load_csv(path)


def test_csv_ragged_rows(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("x1,y1\n1,2\n3\n5,6\n")
    with pytest.raises(DataError):
        load_csv(path)


def test_csv_header_width_mismatch(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("x1,y1\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError):
        load_csv(path)


def test_csv_non_numeric(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("x1,y1\n1,2\n3,abc\n")
    with pytest.raises(DataError):
        load_csv(path)


def test_a_read_only_array_becomes_a_dataset_without_a_warning():
    """pandas' copy-on-write arrays are read-only; torch would warn that it cannot share their memory."""
    import warnings

    import numpy as np

    from pyrovae.data.base import Dataset

    y = np.arange(6.0).reshape(3, 2)
    y.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = Dataset("read-only", np.zeros((3, 0)), y)
    assert data.observed.tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
