"""The Dataset object: data named by role, the old names deprecated (docs/ARCHITECTURE.md, "Names of the data")."""

import pytest
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError


def make(n=4, p=1, q=2):
    return Dataset("toy", torch.arange(n * p).reshape(n, p), torch.arange(n * q).reshape(n, q) + 100.0)


def test_condition_and_observed_keep_their_roles_and_widths():
    d = make(p=3, q=2)
    assert d.condition.shape == (4, 3) and d.observed.shape == (4, 2)
    assert (d.condition_dim, d.observed_dim, len(d)) == (3, 2, 4)
    assert float(d.observed[0, 0]) == 100.0  # the observed data is the second tensor, as before


@pytest.mark.parametrize("old, new", [("x", "condition"), ("y", "observed"), ("x_dim", "condition_dim"),
                                      ("y_dim", "observed_dim")])
def test_the_old_names_warn_and_still_answer(old, new):
    d = make()
    with pytest.warns(DeprecationWarning, match=f"Dataset.{old} is deprecated; use Dataset.{new}"):
        value = getattr(d, old)
    expected = getattr(d, new)
    assert value is expected or value == expected


def test_the_test_suite_refuses_the_old_names():
    # pyproject's filterwarnings turns the deprecation into an error, so library code cannot use them
    with pytest.raises(DeprecationWarning):
        make().y


def test_rows_must_agree_and_the_message_uses_the_new_names():
    with pytest.raises(DataError, match="condition has 3 rows but the observed data has 4"):
        Dataset("bad", torch.zeros(3, 1), torch.zeros(4, 2))


def test_a_semi_supervised_data_set_keeps_its_labels_apart_from_the_observed_points():
    from pyrovae.data.yacoby_m2 import SemiSupervisedDataset

    d = SemiSupervisedDataset("s", torch.zeros(4, 0), torch.ones(4, 2), labels=torch.tensor([0.0, 1, 0, 1]),
                              labelled=torch.tensor([True, False, True, False]))
    assert d.points is d.observed and d.condition_dim == 0 and d.labels.shape == (4, 1)
