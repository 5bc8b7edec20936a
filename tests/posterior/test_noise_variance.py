"""The noise variance under the exact posterior: at the generating model it is the true σ²."""

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.metrics.noise_fit import elbo_optimal_noise_variance
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import FixedNoise
from pyrovae.posterior.noise_variance import exact_posterior_noise_variance


def test_exact_posterior_noise_variance_recovers_the_truth_at_the_generating_model():
    # E_p(x) E_p(z|x)[(x - f(z))^2] = E_p(z) E_p(x|z)[(x - f(z))^2] = sigma^2, for any f (a folded one here)
    torch.manual_seed(1)
    model = SigmaCVAE(0, 2, 1, [8], [16, 16], noise=FixedNoise(0.1), activation="leaky_relu")
    for p in model.decoder.parameters():
        p.data.mul_(2.0)  # a strongly non-linear, non-injective curve
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3000, 1, generator=g)
    x = torch.zeros(3000, 0)
    with torch.no_grad():
        y = model.decode(x, z) + 0.1 * torch.randn(3000, 2, generator=g)
    per_dim = exact_posterior_noise_variance(model, x, y, per_dimension=True, resolution=4001, limit=7.0)
    assert per_dim.shape == (2,)
    assert torch.allclose(per_dim, torch.full((2,), 0.01), rtol=0.06)
    # an untrained encoder's q_phi is far from the posterior: Eq. 9 with it is much larger
    assert float(elbo_optimal_noise_variance(model, x, y, draws=20)) > 2 * float(per_dim.mean())
    with pytest.raises(ConfigError):
        exact_posterior_noise_variance(SigmaCVAE(0, 2, 2, [4], [4]), x[:5], y[:5])


def test_data_of_the_wrong_width_is_refused_before_any_grid():
    model = SigmaCVAE(0, 2, 1, [4], [4], noise=FixedNoise(0.1))
    with pytest.raises(ConfigError, match="response columns"):
        exact_posterior_noise_variance(model, torch.zeros(5, 0), torch.zeros(5, 3))
