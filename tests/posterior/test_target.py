"""The per-point likelihood of a fixed decoder, and choosing points."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior import model_target, select_points
from tests.posterior.builders import tanh_model

D64 = torch.float64


@pytest.mark.parametrize(
    "points, want",
    [(None, [0, 1, 2, 3, 4]), (2, [0, 1]), (99, [0, 1, 2, 3, 4]), ([4, 1], [4, 1]), ("3", [0, 1, 2]), ("0,4", [0, 4]), ("2,", [2])],
)
def test_select_points(points, want):
    assert select_points(5, points) == want


@pytest.mark.parametrize("points", [0, "0", [5], [-1], [1, 1], "a,b", [], True])
def test_select_points_rejects(points):
    with pytest.raises(ConfigError):
        select_points(5, points)


def test_model_target_is_the_gaussian_decoder_likelihood():
    model = tanh_model(2, sigma=0.4)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.zeros(6, 0, dtype=D64), torch.randn(6, 3, generator=gen, dtype=D64)
    target = model_target(model, x, y, points=[1, 4])
    assert target.points == [1, 4] and target.num_points == 2 and target.latent_dim == 2
    z = torch.randn(7, 2, 2, generator=gen, dtype=D64)  # leading particle dimension
    mean = model.decode(x[[1, 4]], z).detach()
    want = torch.distributions.Normal(mean, 0.4).log_prob(y[[1, 4]]).sum(-1)
    torch.testing.assert_close(target.log_lik(z), want)
    prior = -0.5 * z.pow(2).sum(-1) - math.log(2 * math.pi)
    torch.testing.assert_close(target.log_joint(z), want + prior)
    # the caller's model is untouched: the target holds a frozen copy
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in target.model.parameters())
    loc, scale = target.encoder()
    torch.testing.assert_close(loc, model.encode(x[[1, 4]], y[[1, 4]])[0].detach())


def test_model_target_errors():
    with pytest.raises(ConfigError, match="Gaussian decoder"):
        model_target(torch.nn.Linear(2, 2), torch.zeros(3, 0), torch.zeros(3, 2))
    with pytest.raises(DataError):
        model_target(tanh_model(1), torch.zeros(3, 0), torch.zeros(4, 3))
    with pytest.raises(DataError, match="NaN"):
        model_target(tanh_model(1), torch.zeros(3, 0), torch.full((3, 3), float("nan")))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            model_target(tanh_model(1), torch.zeros(3, 0), torch.zeros(3, 3), device="cuda")


def test_a_model_with_its_own_likelihood_gets_that_likelihood_not_a_gaussian_one():
    """A Student-t σ-CVAE: the ground truth reads log p(y | z) off its Pyro program (hand-computed
    here with torch's Student-t), not the Gaussian formula of the parent class."""
    import pyro
    import pyro.distributions as dist

    from pyrovae.models import SigmaCVAE

    class StudentTCVAE(SigmaCVAE):
        def model(self, x, y=None, beta=1.0):
            with pyro.plate("data", x.shape[0], dim=-1):
                z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
                return pyro.sample("y", dist.StudentT(3.0, self.decode(x, z), 0.3).to_event(1), obs=y)

    gaussian = tanh_model(2)
    student = StudentTCVAE(0, 3, 2, encoder_widths=(8,), decoder_widths=(8,)).double()
    student.load_state_dict(gaussian.state_dict(), strict=False)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.zeros(5, 0, dtype=torch.float64), torch.randn(5, 3, generator=gen, dtype=torch.float64)
    z = torch.randn(4, 5, 2, generator=gen, dtype=torch.float64)  # (draws, N, d)
    target = model_target(student, x, y)
    expected = torch.distributions.StudentT(3.0, gaussian.decode(x, z), 0.3).log_prob(y).sum(-1)
    assert torch.allclose(target.log_lik(z), expected, atol=1e-10)
    assert not torch.allclose(model_target(gaussian, x, y).log_lik(z), expected, atol=1e-3)
    assert target.decoder_mean is None  # no Gaussian shortcuts (exact linear posterior, predictive) for it
