r"""The Pyro ELBOs of the σ-CVAE against the negative ELBO written out by hand.

For fixed parameters the estimators are random only through ``z``. The ELBO runs the
guide first, so seeding before the loss and again before tracing the guide gives the
``z`` it drew; the loss must then equal the closed form for that ``z``:

* ``meanfield``: :math:`\sum_i -\log N(y_i \mid \mu(x_i, z_i), \sigma^2 I) + \beta\,KL(N(m_i, s_i^2) \| N(0, I))`
* ``trace``: :math:`\sum_i -\log p(y_i \mid z_i) + \beta(-\log p(z_i) + \log q(z_i))`
* ``iwae``: :math:`-\sum_i [\operatorname{logsumexp}_s \log w_{is} - \log S]`,
  :math:`\log w_{is} = \log p(y_i \mid z_{is}) + \log p(z_{is}) - \log q(z_{is})`.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.inference.objectives import IWAE_ELBO, check_objective, make_elbo
from pyrovae.models import CalibratedNoise, FixedNoise, LearnedNoise, SigmaCVAE

LOG_2PI = math.log(2 * math.pi)
N, P, Q, D = 30, 1, 2, 2


# -- closed forms, by hand ---------------------------------------------------------
def log_normal_iso(v: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(v | mean, sigma^2 I), summed over the last dimension."""
    k = v.shape[-1]
    return -0.5 * ((v - mean) ** 2).sum(-1) / sigma**2 - k * math.log(sigma) - 0.5 * k * LOG_2PI


def log_normal_diag(v: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(v | loc, diag(scale^2)), summed over the last dimension."""
    return (-0.5 * ((v - loc) / scale) ** 2 - torch.log(scale) - 0.5 * LOG_2PI).sum(-1)


def kl_to_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, I)) = 1/2 sum(loc^2 + scale^2 - 1 - log scale^2)."""
    return 0.5 * (loc**2 + scale**2 - 1.0 - 2.0 * torch.log(scale)).sum(-1)


# -- fixtures -----------------------------------------------------------------------
def make_model(noise) -> SigmaCVAE:
    pyro.set_rng_seed(123)
    return SigmaCVAE(P, Q, noise=noise).double()


def make_data():
    g = torch.Generator().manual_seed(9)
    x = torch.where(torch.rand(N, P, generator=g) < 0.5, -1.0, 1.0).double()
    y = torch.randn(N, Q, generator=g, dtype=torch.float64)
    return x, y


NOISES = {
    "learned": lambda: LearnedNoise(0.7),
    "calibrated": lambda: CalibratedNoise(0.3),
    "fixed": lambda: FixedNoise(1.6),
}


def loss_and_z(name: str, model: SigmaCVAE, x, y, beta: float, particles: int = 1, seed: int = 2024):
    """The ELBO's loss and, by re-seeding, the z its guide drew."""
    elbo = make_elbo(name, particles)
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model.model, model.guide, x, y, beta)
    pyro.set_rng_seed(seed)
    if particles > 1:  # the vectorised particle plate of pyro's ELBO (max_plate_nesting = 1)
        with pyro.plate("num_particles_vectorized", particles, dim=-2):
            trace = poutine.trace(model.guide).get_trace(x, y, beta)
    else:
        trace = poutine.trace(model.guide).get_trace(x, y, beta)
    return loss, trace.nodes["z"]["value"].detach()


# -- tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("noise", list(NOISES))
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_meanfield_loss_is_recon_plus_beta_analytic_kl(noise, beta):
    model, (x, y) = make_model(NOISES[noise]()), make_data()
    loss, z = loss_and_z("meanfield", model, x, y, beta)
    with torch.no_grad():
        loc, scale = model.encode(x, y)
        mu = model.decode(x, z)
        expected = (-log_normal_iso(y, mu, model.sigma) + beta * kl_to_standard_normal(loc, scale)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-9)


@pytest.mark.parametrize("noise", list(NOISES))
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_trace_loss_is_monte_carlo_negative_elbo(noise, beta):
    model, (x, y) = make_model(NOISES[noise]()), make_data()
    loss, z = loss_and_z("trace", model, x, y, beta)
    with torch.no_grad():
        loc, scale = model.encode(x, y)
        mu = model.decode(x, z)
        log_lik = log_normal_iso(y, mu, model.sigma)
        log_prior = log_normal_iso(z, torch.zeros_like(z), 1.0)
        log_q = log_normal_diag(z, loc, scale)
        expected = (-log_lik + beta * (log_q - log_prior)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-9)


def test_z_really_is_the_sample_the_elbo_drew():
    """Guard for the seeding trick: a different seed gives a different loss."""
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    a, _ = loss_and_z("trace", model, x, y, 1.0, seed=1)
    b, _ = loss_and_z("trace", model, x, y, 1.0, seed=2)
    c, _ = loss_and_z("trace", model, x, y, 1.0, seed=1)
    assert a.item() != b.item() and a.item() == c.item()


def test_meanfield_is_the_trace_elbo_averaged_over_z():
    """E_q[log q - log p(z)] = KL: the two estimators agree in expectation (many z)."""
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    pyro.set_rng_seed(0)
    mf = make_elbo("meanfield", 2000).differentiable_loss(model.model, model.guide, x, y).item()
    tr = make_elbo("trace", 2000).differentiable_loss(model.model, model.guide, x, y).item()
    assert tr == pytest.approx(mf, rel=5e-3)


@pytest.mark.parametrize("S", [2, 5])
@pytest.mark.parametrize("noise", ["learned", "calibrated"])
def test_iwae_loss_is_logsumexp_of_importance_weights(S, noise):
    model, (x, y) = make_model(NOISES[noise]()), make_data()
    loss, z = loss_and_z("iwae", model, x, y, 1.0, particles=S)
    assert z.shape == (S, N, D)
    with torch.no_grad():
        loc, scale = model.encode(x, y)
        mu = model.decode(x, z)  # (S, N, Q)
        log_w = (
            log_normal_iso(y, mu, model.sigma)
            + log_normal_iso(z, torch.zeros_like(z), 1.0)
            - log_normal_diag(z, loc, scale)
        )  # (S, N)
        m = log_w.max(dim=0).values
        lse = m + torch.log(torch.exp(log_w - m).sum(0))  # logsumexp over s, by hand
        expected = -(lse - math.log(S)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-9)


def test_iwae_with_one_particle_equals_trace_elbo():
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    iwae, z1 = loss_and_z("iwae", model, x, y, 1.0, particles=1)
    trace, z2 = loss_and_z("trace", model, x, y, 1.0, particles=1)
    assert torch.equal(z1, z2)
    assert iwae.item() == pytest.approx(trace.item(), rel=1e-12, abs=1e-10)


def test_iwae_bound_tightens_with_particles():
    """E[loss_S] is non-increasing in S (Burda et al. 2016, Thm 1); averaged over many seeds."""
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    means = []
    for S in (1, 10):
        pyro.set_rng_seed(0)
        elbo = make_elbo("iwae", S)
        means.append(sum(elbo.differentiable_loss(model.model, model.guide, x, y).item() for _ in range(30)) / 30)
    assert means[1] < means[0]


@pytest.mark.parametrize("name, particles", [("trace", 1), ("meanfield", 1), ("iwae", 3), ("trace", 3)])
def test_gradients_reach_every_parameter(name, particles):
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    loss = make_elbo(name, particles).differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    assert "noise.log_sigma" in names
    assert any(n.startswith("encoder.") for n in names) and any(n.startswith("decoder.") for n in names)
    for n, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {n}"
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, f"zero gradient for {n}"


def test_learned_sigma_gradient_is_closed_form():
    r"""d(-ELBO)/d log sigma = sum_i (q - ||y_i - mu_i||^2 / sigma^2) for the same z."""
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    loss, z = loss_and_z("meanfield", model, x, y, 1.0)
    loss.backward()
    with torch.no_grad():
        sq = ((y - model.decode(x, z)) ** 2).sum(-1)
        expected = (Q - sq / model.sigma**2).sum()
    assert model.noise.log_sigma.grad.item() == pytest.approx(expected.item(), rel=1e-9)


def test_make_elbo_types_and_validation():
    assert isinstance(make_elbo("trace"), pyro.infer.Trace_ELBO)
    assert isinstance(make_elbo("meanfield"), pyro.infer.TraceMeanField_ELBO)
    iwae = make_elbo("iwae", 4)
    assert isinstance(iwae, IWAE_ELBO) and iwae.alpha == 0 and iwae.num_particles == 4 and iwae.vectorize_particles
    with pytest.raises(UnknownNameError):
        make_elbo("renyi-ish")
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError):
            make_elbo("trace", bad)


def test_iwae_refuses_annealing():
    check_objective("iwae", anneals=False)
    check_objective("trace", anneals=True)
    with pytest.raises(ConfigError):
        check_objective("iwae", anneals=True)


@pytest.mark.parametrize("name", ["trace", "meanfield"])
def test_beta_zero_drops_the_latent_terms_and_their_gradients(name):
    """Annealing starts at beta = 0 (Eq. 12): the loss is the reconstruction alone."""
    model, (x, y) = make_model(NOISES["learned"]()), make_data()
    loss, z = loss_and_z(name, model, x, y, 0.0)
    with torch.no_grad():
        expected = -log_normal_iso(y, model.decode(x, z), model.sigma).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    loss.backward()
    # the log-variance head only enters through z = loc + scale * eps, still differentiable
    assert model.encoder.log_var.weight.grad is not None
