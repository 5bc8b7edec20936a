"""Builders shared by the posterior tests: small fixed decoders, linear and nonlinear."""

from __future__ import annotations

import pyro
import torch

from pyrovae.models import FixedNoise, SigmaCVAE
from pyrovae.posterior import LatentTarget, LinearGaussian, model_target

torch.set_num_threads(1)


def tanh_model(latent_dim: int, y_dim: int = 3, sigma: float = 0.3, seed: int = 1, gain: float = 1.5) -> SigmaCVAE:
    """An untrained σ-CVAE (no conditioning columns) with a tiny tanh decoder and fixed σ."""
    pyro.set_rng_seed(seed)
    model = SigmaCVAE(0, y_dim, latent_dim, encoder_widths=(8,), decoder_widths=(8,), noise=FixedNoise(sigma)).double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(gain)
    return model


def tanh_target(latent_dim: int, n: int, sigma: float = 0.3, seed: int = 1, gain: float = 1.5) -> LatentTarget:
    """``n`` points drawn from the model itself, as a target (float64)."""
    model = tanh_model(latent_dim, sigma=sigma, seed=seed, gain=gain)
    gen = torch.Generator().manual_seed(seed + 100)
    z = torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
    x = torch.zeros(n, 0, dtype=torch.float64)
    with torch.no_grad():
        mean = model.decode(x, z)
    y = mean + sigma * torch.randn(mean.shape, generator=gen, dtype=torch.float64)
    return model_target(model, x, y, dtype=torch.float64)


def random_linear(latent_dim: int, obs_dim: int, sigma: float, seed: int = 0) -> LinearGaussian:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(obs_dim, latent_dim, generator=gen, dtype=torch.float64)
    b = torch.randn(obs_dim, generator=gen, dtype=torch.float64)
    return LinearGaussian.from_scale(w, b, sigma)


def linear_data(lg: LinearGaussian, n: int, seed: int = 1) -> torch.Tensor:
    return lg.sample(n, torch.Generator().manual_seed(seed))[1]


