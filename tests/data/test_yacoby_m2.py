"""Yacoby, Pan & Doshi-Velez's semi-circle benchmarks (App. H, Eq. 38-39) against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyrovae.data import make_dataset
from pyrovae.data.yacoby_m2 import (SemiSupervisedDataset, continuous_semicircle, discrete_semicircle,
                                    sample_semicircle_cohort, semicircle_f)
from pyrovae.errors import ConfigError, DataError


def test_discrete_f_matches_eq38_by_hand():
    z = torch.tensor([-1.0, 0.0, 0.7])
    p = torch.tensor([stats.norm.cdf(v) for v in z.tolist()], dtype=torch.float32)
    a0, a1 = math.pi * p.sqrt(), math.pi * p**3
    torch.testing.assert_close(semicircle_f(z, 0, "discrete"), torch.stack([a0.cos(), a0.sin()], -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(semicircle_f(z, 1, "discrete"), torch.stack([a1.cos(), a1.sin()], -1), atol=1e-6, rtol=0)
    # both branches lie on the unit upper semi-circle and meet at the ends
    assert torch.allclose(semicircle_f(z, 1).norm(dim=-1), torch.ones(3)) and (semicircle_f(z, 0)[:, 1] >= 0).all()
    torch.testing.assert_close(semicircle_f(torch.tensor([0.0]), 0)[0, 0], torch.tensor(math.cos(math.pi * math.sqrt(0.5))))


def test_continuous_f_matches_eq39_and_limits():
    z, y = 0.3, -0.4
    h = stats.beta.ppf(stats.norm.cdf(y), 0.2, 0.2)
    p = stats.norm.cdf(z)
    a = h * math.pi * math.sqrt(p) + (1 - h) * math.pi * p**3
    torch.testing.assert_close(semicircle_f(z, y, "continuous"), torch.tensor([math.cos(a), math.sin(a)]), atol=1e-6, rtol=0)
    # y -> +inf gives h -> 1 (the discrete y = 0 branch), y -> -inf gives the y = 1 branch
    zz = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(semicircle_f(zz, 8.0, "continuous"), semicircle_f(zz, 0), atol=1e-5, rtol=0)
    torch.testing.assert_close(semicircle_f(zz, -8.0, "continuous"), semicircle_f(zz, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [discrete_semicircle, continuous_semicircle])
def test_generators_split_and_noise(make):
    ds = make(n=400, seed=3)
    assert isinstance(ds, SemiSupervisedDataset) and ds.points.shape == (400, 2) and ds.condition.shape == (400, 0)
    assert int(ds.labelled.sum()) == 40
    xl, yl, xu = ds.split()
    assert xl.shape == (40, 2) and yl.shape == (40, 1) and xu.shape == (360, 2)
    resid = ds.points - semicircle_f(ds.truth["z"].squeeze(-1), ds.labels.squeeze(-1), ds.truth["kind"])
    assert abs(resid.std().item() - 0.1) < 0.01 and abs(resid.mean().item()) < 0.02
    again = make(n=400, seed=3)
    assert torch.equal(again.points, ds.points) and torch.equal(again.labelled, ds.labelled)


def test_labels_distribution_and_registry():
    ds = make_dataset("discrete-semicircle", n=2000, seed=1)
    assert set(np.unique(ds.labels.numpy())) == {0.0, 1.0} and abs(ds.labels.mean().item() - 0.5) < 0.05
    c = make_dataset("continuous-semicircle", n=2000, seed=1)
    assert abs(c.labels.std().item() - 1.0) < 0.06


def test_cohort_and_bad_input():
    s = sample_semicircle_cohort("continuous", 3.5, 50, seed=0)
    assert s.shape == (50, 2)
    with pytest.raises(ConfigError):
        discrete_semicircle(n=10, labelled_fraction=1.5)
    with pytest.raises(ConfigError):
        semicircle_f(0.0, 0.0, "ordinal")
    with pytest.raises(DataError):
        semicircle_f(0.0, 2.0, "discrete")
