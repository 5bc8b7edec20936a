"""Pyro NUTS and the batched torch HMC against grid posteriors of a small nonlinear decoder,
and the trap the grid cross-check exists for (a wrong mode with r̂ ≈ 1)."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.posterior import (
    LatentTarget,
    LinearGaussian,
    batched_hmc,
    diagnostics_table,
    grid_crosscheck,
    grid_posterior,
    initial_latents,
    nuts_posterior,
)
from tests.posterior.builders import tanh_target

D64 = torch.float64
# seeds of the tiny tanh decoder whose posteriors are unimodal but skewed (1-D) / non-Gaussian (2-D)
DECODER_SEED = {1: 3, 2: 1}
MEAN_Z_TOL = 4.0  # sample mean within 4 Monte-Carlo standard errors of the grid mean


def check_against_grid(samples, target):
    grid = grid_posterior(target, resolution=None if target.latent_dim == 1 else 201, on_flag="raise")
    cc = grid_crosscheck(samples, grid)
    assert cc.table["mean_z"].abs().max() < MEAN_Z_TOL, cc.table
    assert cc.ok, cc.table
    return cc


def check_format(samples, chains, draws, n, d):
    """Per-point statistics for the batched HMC, joint ones for NUTS (one trajectory for all points)."""
    assert samples.z.shape == (chains, draws, n, d)
    per_point = samples.method == "hmc"
    shape = (chains, draws, n) if per_point else (chains, draws)
    assert samples.stats["diverging"].shape == shape and samples.stats["diverging"].dtype == torch.bool
    assert samples.stats["lp"].shape == shape and samples.stats["step_size"].shape == shape
    if per_point:
        accept = samples.stats["acceptance_rate"]
        assert accept.shape == shape and ((accept >= 0) & (accept <= 1)).all()
        assert samples.stats["energy"].shape == shape
        assert samples.stats["adapted_step_size"].shape == (chains, n)
        assert (samples.stats["n_steps"] > 0).all()
    assert samples.divergences().shape == (n,)
@pytest.mark.parametrize("latent_dim, n, warmup, draws", [(1, 3, 40, 80), (2, 2, 40, 80)])
def test_nuts_matches_grid(latent_dim, n, warmup, draws):
    target = tanh_target(latent_dim, n, seed=DECODER_SEED[latent_dim])
    samples = nuts_posterior(
        target, num_samples=draws, warmup_steps=warmup, num_chains=2, init="median", seed=0, max_tree_depth=5
    )
    check_format(samples, 2, draws, n, latent_dim)
    assert samples.method == "nuts" and samples.points == list(range(n))
    torch.testing.assert_close(samples.stats["lp"], target.log_joint(samples.z).sum(-1))
    check_against_grid(samples, target)


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_batched_hmc_matches_grid(latent_dim):
    target = tanh_target(latent_dim, 10, seed=DECODER_SEED[latent_dim])
    samples = batched_hmc(target, num_samples=80, warmup_steps=60, num_chains=4, num_steps=5, init="prior", seed=0)
    check_format(samples, 4, 80, 10, latent_dim)
    assert samples.method == "hmc" and samples.divergences().sum() == 0
    torch.testing.assert_close(samples.stats["lp"], target.log_joint(samples.z))
    # the Hamiltonian of the kept state is at least its potential energy -lp (kinetic energy >= 0)
    assert (samples.stats["energy"] >= -samples.stats["lp"] - 1e-12).all()
    check_against_grid(samples, target)


def test_nuts_is_reproducible_and_leaves_the_global_rng_alone():
    target = tanh_target(1, 2, seed=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = nuts_posterior(target, num_samples=5, warmup_steps=5, num_chains=2, init="median", seed=5, max_tree_depth=3)
    after = torch.rand(1)
    b = nuts_posterior(target, num_samples=5, warmup_steps=5, num_chains=2, init="median", seed=5, max_tree_depth=3)
    torch.testing.assert_close(a.z, b.z)
    assert torch.equal(before, after)


def test_batched_hmc_adapts_a_step_size_per_point():
    # one latent, per-point weights spanning 100x: posterior sds from ~0.5 to ~0.005
    scales = torch.tensor([1.0, 10.0, 100.0], dtype=D64)
    lg = LinearGaussian(scales.view(3, 1, 1), torch.zeros(3, 1, dtype=D64), 0.25 * torch.eye(1, dtype=D64))
    y = torch.tensor([[0.3], [2.0], [-40.0]], dtype=D64)
    samples = batched_hmc(lg.as_target(y), num_samples=60, warmup_steps=60, num_chains=2, num_steps=5, init="prior", seed=1)
    step = samples.stats["adapted_step_size"].mean(0)  # step size x sqrt(inverse mass) follows the posterior sd
    eff = step * samples.stats["inv_mass"].mean(0).squeeze(-1).sqrt()
    sd = lg.posterior(y)[1].squeeze(-1).squeeze(-1).sqrt()
    ratio = eff / sd
    assert float(ratio.max() / ratio.min()) < 3.0
    accept = samples.stats["acceptance_rate"].mean((0, 1))
    assert ((accept > 0.6) & (accept < 1.0)).all()
    torch.testing.assert_close(samples.mean().squeeze(-1), lg.posterior(y)[0].squeeze(-1), rtol=0, atol=float(3 * sd.max() / 5))


def symmetric_target(sigma: float = 0.05) -> tuple[LatentTarget, torch.Tensor]:
    r"""``y = z² + N(0, σ²)``: symmetric in ``z``, so each posterior has modes at ±√y."""
    z_true = torch.tensor([0.8, 1.2, 1.6], dtype=D64)
    y = (z_true.pow(2)).unsqueeze(-1)

    def log_lik(z):
        return -0.5 * ((y - z.pow(2)) / sigma).pow(2).sum(-1) - math.log(sigma) - 0.5 * math.log(2 * math.pi)

    return LatentTarget(log_lik, latent_dim=1, num_points=3, dtype=D64), z_true


def test_wrong_mode_has_good_rhat_but_the_grid_crosscheck_catches_it():
    target, z_true = symmetric_target()
    start = z_true.view(3, 1)  # every chain starts in the positive mode
    samples = batched_hmc(target, num_samples=250, warmup_steps=40, num_chains=4, num_steps=3, init=start, seed=0)
    # the chains agree with each other: r̂ ≈ 1, plenty of ESS, no divergences
    table = diagnostics_table(samples)
    assert (table["r_hat"] < 1.02).all(), table["r_hat"]
    assert (table["ess_bulk"] > 100).all() and (table["divergences"] == 0).all()
    assert (samples.z > 0).all()
    # ... yet the true posterior is symmetric: mean 0, variance ≈ y
    grid = grid_posterior(target, on_flag="raise")
    torch.testing.assert_close(grid.mean.squeeze(-1), torch.zeros(3, dtype=D64), rtol=0, atol=1e-9)
    cc = grid_crosscheck(samples, grid)
    assert cc.flagged_points == [0, 1, 2]
    assert cc.table["flag_mean"].all() and cc.table["flag_var"].all()


def test_initial_latents():
    target = tanh_target(2, 3, seed=1)
    gen = torch.Generator().manual_seed(0)
    enc = initial_latents(target, 3, "encoder", generator=gen)
    loc, _ = target.encoder()
    torch.testing.assert_close(enc[0], loc)
    assert not torch.allclose(enc[1], loc)
    assert initial_latents(target, 2, "median", generator=gen).shape == (2, 3, 2)
    assert initial_latents(target, 2, torch.zeros(3, 2)).shape == (2, 3, 2)
    with pytest.raises(ConfigError):
        initial_latents(target, 2, torch.zeros(4, 2))
    with pytest.raises(ConfigError):
        initial_latents(target, 2, "nowhere")
    bare = LatentTarget(lambda z: -z.pow(2).sum(-1), 1, 2)
    with pytest.raises(ConfigError, match="encoder"):
        initial_latents(bare, 2, "encoder")
    with pytest.raises(ConfigError):
        batched_hmc(bare, num_samples=0)
