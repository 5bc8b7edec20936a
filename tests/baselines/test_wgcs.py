"""WGCS (Liu, Zhou, Jiao & Huang 2021), the Wasserstein conditional generator of Liu & Wang's Table 3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.baselines.wgcs import WGCS
from pyrovae.errors import DataError


def _heteroscedastic(n=2000, seed=0):
    """y | x ~ N(2x, s(x)²), s = 0.3 for x < 0 and 0.6 for x > 0, x ~ U(-1, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 1))
    return x, 2 * x[:, 0] + np.where(x[:, 0] > 0, 0.6, 0.3) * rng.normal(size=n)


def test_wgcs_learns_a_conditional_gaussians_mean_and_spread():
    x, y = _heteroscedastic()
    state = torch.get_rng_state()
    model = WGCS(steps=400, seed=0).fit(x, y)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator: the global stream does not move
    mean, sd = model.moments(np.array([[-0.5], [0.5]]), draws=5000)
    assert mean == pytest.approx([-1.0, 1.0], abs=0.25)
    assert sd == pytest.approx([0.3, 0.6], abs=0.15)
    assert sd[1] - sd[0] > 0.2  # the spread's dependence on x is learned, not only the mean
    assert len(model.history) == 400 and np.isfinite(model.history).all()


def test_wgcs_is_deterministic_and_samples_in_the_datas_units():
    x, y = _heteroscedastic(300)
    a, b = WGCS(steps=5, seed=3).fit(x, 100 + 10 * y), WGCS(steps=5, seed=3).fit(x, 100 + 10 * y)
    assert a.history == b.history
    draws = a.sample(np.zeros((4, 1)), 7)
    assert draws.shape == (7, 4, 1) and abs(float(draws.mean()) - 100) < 60  # mapped back from the standardised scale


def test_wgcs_rejects_bad_input():
    with pytest.raises(DataError, match="rows"):
        WGCS(steps=1).fit(np.zeros((5, 1)), np.zeros(4))
    with pytest.raises(DataError, match="NaN"):
        WGCS(steps=1).fit(np.array([[0.0], [np.nan]]), np.zeros(2))
    with pytest.raises(DataError, match="fit"):
        WGCS().sample(np.zeros((1, 1)), 3)


def test_a_diverging_wgcs_raises_and_keeps_finite_weights():
    """At lr = 1e30 the first critic step moves the weights to ~1e30 and the next critic loss overflows
    (float32): that step is not applied, and the fit raises at generator step 1 with every weight finite."""
    from pyrovae.errors import TrainingDiverged

    x, y = _heteroscedastic(100)
    model = WGCS(steps=50, lr=1e30, seed=0)
    with pytest.raises(TrainingDiverged, match="generator step 1$"):
        model.fit(x, y)
    assert model.history == []
    for net in (model.critic, model.generator):
        assert all(torch.isfinite(p).all() for p in net.parameters())
