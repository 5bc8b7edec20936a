"""Importance-sampled log-likelihood (Yacoby, Pan & Doshi-Velez 2020 Eq. 48) against the exact linear-Gaussian marginal."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics import gaussian_proposal, importance_log_marginal, vae_log_likelihood
from pyrovae.models import FixedNoise, SigmaCVAE

D64 = torch.float64


class LinearVAE(nn.Module):
    r"""``z ~ N(0, I)``, ``y | x, z ~ N(W z + b + C x, sigma^2 I)`` with an encoder set to the
    exact posterior's mean and marginal SDs (or to the prior, ``exact=False``)."""

    def __init__(self, w, b, sigma, c=None, exact=True):
        super().__init__()
        self.w, self.b, self.sig = w, b, sigma
        self.c = c if c is not None else torch.zeros(w.shape[0], 0, dtype=D64)
        self.noise = FixedNoise(sigma).double()
        d = w.shape[1]
        self.post_cov = torch.linalg.inv(torch.eye(d, dtype=D64) + w.T @ w / sigma**2)
        self.exact = exact

    def shift(self, x):
        return self.b + x @ self.c.T

    def encode(self, x, y):
        if not self.exact:
            return torch.zeros(y.shape[0], self.w.shape[1], dtype=D64), torch.ones(y.shape[0], self.w.shape[1], dtype=D64)
        loc = (y - self.shift(x)) @ self.w @ self.post_cov.T / self.sig**2
        return loc, self.post_cov.diagonal().sqrt().expand_as(loc)

    def decode(self, x, z):
        return z @ self.w.T + self.shift(x)

    def exact_log_marginal(self, x, y):
        cov = self.w @ self.w.T + self.sig**2 * torch.eye(self.w.shape[0], dtype=D64)
        return torch.distributions.MultivariateNormal(self.shift(x), covariance_matrix=cov).log_prob(y)


def linear_case(n=20, d=2, q=3, p=0, sigma=0.3, exact=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(q, d, generator=g, dtype=D64)
    b = torch.randn(q, generator=g, dtype=D64)
    c = torch.randn(q, p, generator=g, dtype=D64)
    model = LinearVAE(w, b, sigma, c, exact)
    x = torch.randn(n, p, generator=g, dtype=D64)
    y = torch.randn(n, d, generator=g, dtype=D64) @ w.T + model.shift(x) + sigma * torch.randn(n, q, generator=g, dtype=D64)
    return model, x, y


@pytest.mark.parametrize("p", [0, 2])
def test_matches_exact_linear_gaussian_marginal(p):
    model, x, y = linear_case(p=p)
    est, diag = vae_log_likelihood(model, x, y, return_diagnostics=True)  # S = 5000, variance x2
    exact = model.exact_log_marginal(x, y)
    assert est.shape == (20,) and est.dtype == D64
    assert diag.num_samples == 5000
    assert (diag.std_error < 0.02).all()
    # within 4 standard errors plus a little bias allowance, and tightly in absolute terms
    assert ((est - exact).abs() <= 4 * diag.std_error + 1e-3).all()
    assert (est - exact).abs().max() < 0.05


def test_more_samples_smaller_error():
    # the prior as proposal (a poor one) makes the Monte-Carlo error visible
    model, x, y = linear_case(n=60, d=2, q=2, sigma=0.5, exact=False, seed=3)
    exact = model.exact_log_marginal(x, y)
    err = {
        s: (vae_log_likelihood(model, x, y, num_samples=s, inflation=1.0, seed=1) - exact).abs().mean().item()
        for s in (10, 300, 10000)
    }
    assert err[10] > 2 * err[300] > 4 * err[10000]
    assert err[10000] < 0.05


def _replay(z_all: torch.Tensor):
    """A proposal that hands out fixed standard-normal draws in order: chunking cannot change them."""
    cursor = [0]

    def proposal(m):
        z = z_all[cursor[0] : cursor[0] + m]
        cursor[0] += m
        return z, torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    return proposal


def test_chunked_log_sum_exp_equals_the_whole_sum():
    g = torch.Generator().manual_seed(0)
    z_all = torch.randn(1000, 4, 2, generator=g, dtype=D64)
    y = torch.tensor([0.3, -1.0, 2.0, 0.0], dtype=D64)

    def log_joint(z):  # p(z) N(y; z_1 + z_2, 0.5^2)
        lik = torch.distributions.Normal(z.sum(-1), 0.5).log_prob(y)
        return lik + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    log_w = log_joint(z_all) - torch.distributions.Normal(0.0, 1.0).log_prob(z_all).sum(-1)
    expected = torch.logsumexp(log_w, 0) - math.log(1000)
    for chunk in (None, 1000, 64, 7):
        got = importance_log_marginal(log_joint, _replay(z_all), num_samples=1000, chunk_size=chunk)
        assert (got - expected).abs().max() < 1e-12
    exact = torch.distributions.Normal(0.0, math.sqrt(2.25)).log_prob(y)  # y ~ N(0, 2 + 0.25)
    assert (expected - exact).abs().max() < 0.1


def test_chunk_size_does_not_bias_the_vae_estimate():
    model, x, y = linear_case(n=10)
    exact = model.exact_log_marginal(x, y)
    est, diag = vae_log_likelihood(model, x, y, num_samples=2000, chunk_size=7, seed=5, return_diagnostics=True)
    assert ((est - exact).abs() <= 4 * diag.std_error + 1e-3).all()


def test_generic_function_with_prior_proposal_agrees_on_a_sigma_cvae():
    pyro.set_rng_seed(4)
    model = SigmaCVAE(1, 2, latent_dim=2, encoder_widths=(8,), decoder_widths=(8,), noise=FixedNoise(0.4)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 1, generator=g, dtype=D64)
    with torch.no_grad():
        y = model.decode(x, torch.randn(6, 2, generator=g, dtype=D64)) + 0.4 * torch.randn(6, 2, generator=g, dtype=D64)
    ours, diag = vae_log_likelihood(model, x, y, return_diagnostics=True)

    def log_joint(z):  # log p(y | x, z) + log p(z), written out independently
        mean = model.decode(x, z)
        lik = torch.distributions.Normal(mean, 0.4).log_prob(y).sum(-1)
        return lik + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    prior = gaussian_proposal(torch.zeros(6, 2, dtype=D64), torch.ones(6, 2, dtype=D64), 1.0, torch.Generator().manual_seed(9))
    ref, ref_diag = importance_log_marginal(log_joint, prior, num_samples=40000, return_diagnostics=True)
    tol = 4 * torch.sqrt(diag.std_error**2 + ref_diag.std_error**2) + 1e-3
    assert ((ours - ref).abs() <= tol).all()


def test_unconditional_vae_runs():
    pyro.set_rng_seed(0)
    model = SigmaCVAE(0, 3, latent_dim=1, encoder_widths=(4,), decoder_widths=(4,))
    y = torch.randn(5, 3)
    out = vae_log_likelihood(model, torch.zeros(5, 0), y, num_samples=50)
    assert out.shape == (5,) and torch.isfinite(out).all()


def test_bad_arguments():
    model, x, y = linear_case(n=4)
    with pytest.raises(ConfigError, match="num_samples"):
        vae_log_likelihood(model, x, y, num_samples=0)
    with pytest.raises(ConfigError, match="inflation"):
        vae_log_likelihood(model, x, y, inflation=-1.0)
    with pytest.raises(ConfigError, match="same n"):
        vae_log_likelihood(model, x[:3], y)
    y_bad = y.clone()
    y_bad[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        vae_log_likelihood(model, x, y_bad)
