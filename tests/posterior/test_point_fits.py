"""Fits per point with the model fixed: guideline 4's residual check and its closest latents, and Eq. 9 under the
best per-point mean-field q (exact for a linear Gaussian model)."""

import pytest
import torch

from pyrovae.errors import DataError
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import FixedNoise
from pyrovae.posterior.point_fits import closest_latents, mean_field_noise_variance, residual_normality


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
