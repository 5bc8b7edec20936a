"""Two-moon (Liu & Wang 2025, Sec. 5.1): the points lie on the stated half circles with N(0, tau^2) noise."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from pyrovae.data import make_dataset, two_moon
from pyrovae.errors import ConfigError, UnknownNameError


def noiseless_curve(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(cos a + 1/2, sin a - 1/6) for x = -1 and (cos a - 1/2, -sin a + 1/6) for x = 1."""
    a = alpha.double()
    upper = x.squeeze(-1) < 0
    y1 = torch.where(upper, torch.cos(a) + 0.5, torch.cos(a) - 0.5)
    y2 = torch.where(upper, torch.sin(a) - 1.0 / 6.0, -torch.sin(a) + 1.0 / 6.0)
    return torch.stack([y1, y2], dim=1)


@pytest.mark.parametrize("n", [300, 301])
def test_classes_and_shapes(n):
    d = two_moon(n=n, tau=0.1, seed=3)
    assert d.condition.shape == (n, 1) and d.observed.shape == (n, 2) and len(d) == n
    assert set(d.condition.unique().tolist()) == {-1.0, 1.0}
    assert int((d.condition == -1).sum()) == n // 2
    assert int((d.condition == 1).sum()) == n - n // 2
    assert torch.all(d.condition[: n // 2] == -1) and torch.all(d.condition[n // 2 :] == 1)
    assert d.truth["alpha"].shape == (n,)


def test_noiseless_points_lie_exactly_on_the_half_circles():
    d = two_moon(n=400, tau=0.0, seed=1)
    expected = noiseless_curve(d.condition, d.truth["alpha"])
    # y is computed in float64 and stored in the default float32: agree to float32 precision
    torch.testing.assert_close(d.observed.double(), expected, rtol=0, atol=2e-6)
    # and each class is a unit half circle about its own centre
    upper = d.condition.squeeze(-1) < 0
    centre = torch.where(upper.unsqueeze(-1), torch.tensor([0.5, -1 / 6]), torch.tensor([-0.5, 1 / 6]))
    radius = (d.observed.double() - centre.double()).norm(dim=1)
    torch.testing.assert_close(radius, torch.ones_like(radius), rtol=0, atol=2e-6)
    # upper moon bulges up (sin >= 0), lower moon bulges down
    assert torch.all(d.observed[upper, 1] >= -1 / 6 - 1e-6)
    assert torch.all(d.observed[~upper, 1] <= 1 / 6 + 1e-6)


def test_residuals_have_sd_tau():
    tau = 0.1
    d = two_moon(n=20_000, tau=tau, seed=2)
    resid = d.observed.double() - noiseless_curve(d.condition, d.truth["alpha"])
    # 40,000 N(0, tau^2) draws: the sd is within 0.5 % of tau with overwhelming probability
    assert resid.std().item() == pytest.approx(tau, rel=0.03)
    assert abs(resid.mean().item()) < 0.003
    for col in range(2):
        assert resid[:, col].std().item() == pytest.approx(tau, rel=0.03)
    # the two noise coordinates are uncorrelated
    corr = torch.corrcoef(resid.T)[0, 1].item()
    assert abs(corr) < 0.03
    assert d.truth["sigma"] == tau


def test_alpha_is_uniform_on_zero_pi():
    d = two_moon(n=20_000, tau=0.1, seed=4)
    a = d.truth["alpha"].double()
    assert a.min() >= 0 and a.max() <= math.pi
    assert a.mean().item() == pytest.approx(math.pi / 2, abs=0.03)
    assert a.var().item() == pytest.approx(math.pi**2 / 12, rel=0.03)
    assert stats.kstest((a / math.pi).numpy(), "uniform").pvalue > 1e-3


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = two_moon(200, 0.1, seed=7), two_moon(200, 0.1, seed=7), two_moon(200, 0.1, seed=8)
    assert torch.equal(a.condition, b.condition) and torch.equal(a.observed, b.observed) and torch.equal(a.truth["alpha"], b.truth["alpha"])
    assert not torch.equal(a.observed, c.observed)


def test_generator_does_not_touch_the_global_rng():
    torch.manual_seed(11)
    before = torch.get_rng_state()
    two_moon(100, 0.1, seed=0)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("tau", [0.0, 0.05, 0.3])
def test_truth_sigma_is_tau_and_params_recorded(tau):
    d = two_moon(n=50, tau=tau, seed=5)
    assert d.truth["sigma"] == tau
    assert {k: d.params[k] for k in ("n", "tau", "seed")} == {"n": 50, "tau": tau, "seed": 5}


@pytest.mark.parametrize("n", [0, 1, -4, 2.5])
def test_bad_n_raises(n):
    with pytest.raises(ConfigError):
        two_moon(n=n)


@pytest.mark.parametrize("tau", [-0.1, float("nan"), float("inf")])
def test_bad_tau_raises(tau):
    with pytest.raises(ConfigError):
        two_moon(n=10, tau=tau)


def test_registry():
    d = make_dataset("two-moon", n=100, tau=0.2, seed=1)
    assert torch.equal(d.observed, two_moon(100, 0.2, 1).observed)
    with pytest.raises(UnknownNameError):
        make_dataset("three-moon")
