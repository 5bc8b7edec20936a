"""Eq. 9 (the ELBO-optimal noise variance) and guideline 4's residual check."""

import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.noise_fit import (
    closest_latents,
    elbo_optimal_noise_variance,
    residual_normality,
)
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


def test_residual_check_accepts_gaussian_and_rejects_a_missed_curve():
    torch.manual_seed(1)
    n = 300
    z = torch.randn(n, 1)
    x = torch.zeros(n, 0)
    model = SigmaCVAE(0, 2, 1, [8], [8], noise=FixedNoise(0.1))
    with torch.no_grad():  # a linear decoder f(z) = (z, 0): the learned manifold is the horizontal axis
        for layer in model.decoder:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_(); layer.bias.zero_()
    lin = torch.nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]])); lin.bias.zero_()
    model.decoder = lin
    gaussian = torch.cat([z, 0.1 * torch.randn(n, 1)], -1)
    ok = residual_normality(model, x, gaussian)
    assert ok.normal and ok.variance[1] == pytest.approx(0.01, rel=0.3) and ok.variance[0] < 1e-3
    curved = torch.cat([z, z.pow(2) - 1 + 0.05 * torch.randn(n, 1)], -1)  # the data lie on a parabola
    bad = residual_normality(model, x, curved)
    assert not bad.normal
    zs = closest_latents(model, x, gaussian)
    assert torch.allclose(zs, z, atol=1e-2)


def test_mean_field_noise_variance_is_exact_for_a_linear_gaussian_model():
    # 1-D latent, linear decoder: the posterior is Gaussian, so the best per-point q is exact and Eq. 9 ~ sigma^2
    from pyrovae.metrics.noise_fit import mean_field_noise_variance

    torch.manual_seed(0)
    model = SigmaCVAE(0, 2, 1, [4], [], noise=FixedNoise(0.1))
    model.decoder[0].weight.data = torch.tensor([[1.0], [0.5]])
    model.decoder[0].bias.data.zero_()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2000, 1, generator=g)
    x = torch.zeros(2000, 0)
    y = z @ torch.tensor([[1.0, 0.5]]) + 0.1 * torch.randn(2000, 2, generator=g)
    est = mean_field_noise_variance(model, x, y, z, steps=600, lr=1e-2, draws=100)
    assert float(est) == pytest.approx(0.01, rel=0.08)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(DataError):
        mean_field_noise_variance(model, x, y, z[:5])
