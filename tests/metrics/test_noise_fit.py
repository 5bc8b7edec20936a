"""Eq. 9: the ELBO-optimal noise variance under the encoder's q."""

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.metrics.noise_fit import elbo_optimal_noise_variance
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import FixedNoise


def _model(sigma=0.3):
    torch.manual_seed(0)
    return SigmaCVAE(0, 3, 1, [8], [8], noise=FixedNoise(sigma), activation="leaky_relu")


def _neg_elbo(model, x, y, sigma, seed):
    """-ELBO per point with ``draws`` common random numbers and the analytic KL."""
    g = torch.Generator().manual_seed(seed)
    loc, scale = model.encode(x, y)
    sq = 0.0
    for _ in range(50):
        z = loc + scale * torch.randn(loc.shape, generator=g)
        sq = sq + (y - model.decode(x, z)).pow(2)
    sq = sq / 50
    rec = (sq / (2 * sigma**2) + torch.log(sigma) + 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
    return float((rec + kl).mean())


@torch.no_grad()
def test_closed_form_maximises_the_elbo():
    model = _model()
    y = torch.randn(100, 3) * torch.tensor([0.5, 1.0, 2.0])
    x = torch.zeros(100, 0)
    per_dim = elbo_optimal_noise_variance(model, x, y, draws=50, per_dimension=True, seed=3)
    shared = elbo_optimal_noise_variance(model, x, y, draws=50, seed=3)
    assert per_dim.shape == (3,) and shared == pytest.approx(float(per_dim.mean()))
    assert per_dim[2] > per_dim[0]  # the wider column gets the larger variance
    best = _neg_elbo(model, x, y, per_dim.sqrt(), seed=3)
    for factor in (0.8, 0.95, 1.05, 1.25):
        assert _neg_elbo(model, x, y, (per_dim * factor).sqrt(), seed=3) > best
    best_shared = _neg_elbo(model, x, y, shared.sqrt().expand(3), seed=3)
    for factor in (0.9, 1.1):
        assert _neg_elbo(model, x, y, (shared * factor).sqrt().expand(3), seed=3) > best_shared
    with pytest.raises(ConfigError):
        elbo_optimal_noise_variance(model, x, y, draws=0)
    with pytest.raises(ConfigError):
        elbo_optimal_noise_variance(model, x, y[:, :2])
