"""Grid posteriors against the exact linear-Gaussian posterior, and the grid's own checks."""

from __future__ import annotations

import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior import GridWarning, LatentTarget, LinearGaussian, grid_posterior
from tests.posterior.builders import linear_data, random_linear

D64 = torch.float64


@pytest.mark.parametrize("latent_dim, sigma, resolution", [(1, 0.3, None), (1, 0.05, None), (2, 0.3, 201)])
def test_grid_matches_exact(latent_dim, sigma, resolution):
    lg = random_linear(latent_dim, 3, sigma, seed=latent_dim)
    y = linear_data(lg, 8)
    grid = grid_posterior(lg.as_target(y), resolution=resolution, on_flag="raise")
    mean, cov = lg.posterior(y)
    torch.testing.assert_close(grid.mean, mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(grid.cov, cov, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(grid.log_evidence, lg.log_marginal(y), rtol=0, atol=1e-7)
    assert not grid.flagged().any()
    # the density is normalised and its marginals integrate to one
    h = grid.spacing[0]
    torch.testing.assert_close(grid.density().flatten(1).sum(-1) * h**latent_dim, torch.ones(8, dtype=D64))
    torch.testing.assert_close(grid.marginal(0).sum(-1) * h, torch.ones(8, dtype=D64))


def test_correlated_2d_posterior():
    w = torch.tensor([[1.0, 0.9], [0.9, 1.0], [0.5, 0.4]], dtype=D64)
    lg = LinearGaussian.from_scale(w, torch.zeros(3, dtype=D64), 0.4)
    y = torch.tensor([[1.0, 0.5, 0.2], [-1.0, 2.0, 0.0]], dtype=D64)
    grid = grid_posterior(lg.as_target(y), resolution=201, on_flag="raise")
    mean, cov = lg.posterior(y)
    assert abs(float(cov[0, 0, 1] / cov[0, 0, 0].sqrt() / cov[0, 1, 1].sqrt())) > 0.5
    torch.testing.assert_close(grid.cov, cov, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(grid.mean, mean, rtol=0, atol=1e-9)


def test_border_mass_is_flagged():
    # posterior centred near z = 8.5: much of its mass lies in the outer band of [-9, 9]
    lg = LinearGaussian.from_scale(torch.tensor([[1.0]], dtype=D64), torch.zeros(1, dtype=D64), 0.05)
    y = torch.tensor([[0.0], [8.6]], dtype=D64)
    grid = grid_posterior(lg.as_target(y), on_flag="ignore")
    assert grid.flags["border"].tolist() == [False, True]
    with pytest.warns(GridWarning, match="border"):
        grid_posterior(lg.as_target(y), on_flag="warn")
    with pytest.raises(DataError, match=r"points \[1\]"):
        grid_posterior(lg.as_target(y), on_flag="raise")
    wide = grid_posterior(lg.as_target(y), limit=(-3.0, 12.0), resolution=3001, on_flag="raise")
    torch.testing.assert_close(wide.mean, lg.posterior(y)[0], rtol=0, atol=1e-9)


def test_coarse_grid_is_flagged():
    lg = LinearGaussian.from_scale(torch.tensor([[1.0]], dtype=D64), torch.zeros(1, dtype=D64), 0.01)
    y = torch.tensor([[0.3]], dtype=D64)
    grid = grid_posterior(lg.as_target(y), resolution=201, on_flag="ignore")  # h = 0.09 >> sd = 0.01
    assert bool(grid.flags["resolution"][0])
    assert not bool(grid_posterior(lg.as_target(y), resolution=4001, on_flag="ignore").flags["resolution"][0])


def test_grid_samples_follow_the_grid():
    lg = random_linear(2, 3, 0.3, seed=5)
    y = linear_data(lg, 3)
    grid = grid_posterior(lg.as_target(y), resolution=201, on_flag="raise")
    draws = grid.sample(2, 4000, seed=0)
    assert draws.z.shape == (2, 4000, 3, 2) and draws.method == "grid"
    torch.testing.assert_close(draws.mean(), grid.mean, rtol=0, atol=0.03)
    torch.testing.assert_close(draws.var(), grid.var, rtol=0.08, atol=0)


def test_bad_input():
    target3 = LatentTarget(lambda z: -z.pow(2).sum(-1), latent_dim=3, num_points=2)
    with pytest.raises(ConfigError, match="1-D or 2-D"):
        grid_posterior(target3)
    target1 = LatentTarget(lambda z: -z.pow(2).sum(-1), latent_dim=1, num_points=2)
    with pytest.raises(ConfigError):
        grid_posterior(target1, limit=(1.0, -1.0))
    with pytest.raises(ConfigError):
        grid_posterior(target1, resolution=3)
    with pytest.raises(DataError):
        grid_posterior(LatentTarget(lambda z: torch.full(z.shape[:-1], float("nan")), 1, 2))
