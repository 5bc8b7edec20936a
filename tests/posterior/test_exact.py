"""Linear-Gaussian posteriors against the closed forms of Yacoby, Pan & Doshi-Velez (2020) App. C and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.models import FixedNoise, SigmaCVAE
from pyrovae.posterior import (
    LinearGaussian,
    gaussian_kl,
    linearize,
    model_target,
    pedagogical_case1,
    pedagogical_case2,
)
from tests.posterior.builders import linear_data, random_linear, tanh_model

D64 = torch.float64


@pytest.mark.parametrize("theta", [0.0, 0.3, 0.9])
def test_case1_posterior_is_eq16(theta):
    sigma = 1.0
    lg = pedagogical_case1(theta, sigma)
    x = torch.tensor([[-2.0], [0.0], [0.7], [3.1]], dtype=D64)
    mean, cov = lg.posterior(x)
    torch.testing.assert_close(mean, theta / sigma**2 * x, rtol=0, atol=1e-12)
    torch.testing.assert_close(cov.squeeze(), torch.full((4,), (sigma**2 - theta**2) / sigma**2, dtype=D64), rtol=0, atol=1e-12)
    # p(x) = N(0, sigma^2) for every theta (App. C.1)
    want = torch.distributions.Normal(0.0, sigma).log_prob(x.squeeze(-1).float()).double()
    torch.testing.assert_close(lg.log_marginal(x), want, rtol=0, atol=1e-6)
    # I(X; Z) = 1/2 log(sigma^2 / (sigma^2 - theta^2))
    assert float(lg.mutual_information()) == pytest.approx(0.5 * math.log(sigma**2 / (sigma**2 - theta**2)), abs=1e-12)


def test_case1_rejects_theta_too_large():
    with pytest.raises(ConfigError):
        pedagogical_case1(1.0, 1.0)


def case2_inputs():
    a = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=D64) * 1.3
    return a, torch.tensor([0.2, 0.5], dtype=D64), 1.0


def test_case2_posterior_is_eq23_24():
    a, b_diag, sigma = case2_inputs()
    lg = pedagogical_case2(a, b_diag, sigma)
    x = torch.tensor([[0.5, -1.0], [2.0, 1.5], [-0.3, 0.1]], dtype=D64)
    chol = torch.linalg.cholesky(a @ a.T + torch.diag(b_diag))
    noise_inv = torch.linalg.inv(sigma**2 * torch.eye(2, dtype=D64) - torch.diag(b_diag))
    cov_eq24 = torch.linalg.inv(torch.eye(2, dtype=D64) + chol.T @ noise_inv @ chol)
    mean_eq23 = (cov_eq24 @ chol.T @ noise_inv @ x.T).T
    mean, cov = lg.posterior(x)
    torch.testing.assert_close(mean, mean_eq23, rtol=0, atol=1e-12)
    torch.testing.assert_close(cov, cov_eq24.expand(3, 2, 2), rtol=0, atol=1e-12)
    # p_B(x) = N(0, AA^T + sigma^2 I) whatever B is (App. C.2), and Eq. 22
    marg = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=D64), a @ a.T + sigma**2 * torch.eye(2, dtype=D64))
    for b in (b_diag, torch.tensor([0.0, 0.9], dtype=D64)):
        lg_b = pedagogical_case2(a, b, sigma)
        torch.testing.assert_close(lg_b.log_marginal(x), marg.log_prob(x), rtol=0, atol=1e-12)
        mi_eq22 = 0.5 * (torch.logdet(a @ a.T + sigma**2 * torch.eye(2, dtype=D64)) - torch.log(sigma**2 - b).sum())
        assert float(lg_b.mutual_information()) == pytest.approx(float(mi_eq22), abs=1e-12)


def test_best_mean_field_is_appendix_c3():
    a, b_diag, sigma = case2_inputs()
    lg = pedagogical_case2(a, b_diag, sigma)
    x = torch.tensor([[0.5, -1.0]], dtype=D64)
    mean, cov = lg.posterior(x)
    mf_mean, mf_var = lg.mean_field(x)
    lam = torch.linalg.inv(cov[0])
    torch.testing.assert_close(mf_mean, mean)
    torch.testing.assert_close(mf_var[0], 1.0 / torch.diagonal(lam), rtol=0, atol=1e-12)

    def kl(var):
        return float(gaussian_kl(mean[0], torch.diag(var), mean[0], cov[0]))

    best = kl(mf_var[0])
    # Eq. 25-27 at the optimum: 1/2 (sum log Lambda_ii - log det Lambda)
    assert best == pytest.approx(0.5 * (torch.log(torch.diagonal(lam)).sum() - torch.logdet(lam)).item(), abs=1e-12)
    for factor in ([1.1, 1.0], [1.0, 0.9], [0.8, 1.3]):
        assert kl(mf_var[0] * torch.tensor(factor, dtype=D64)) > best
    # the posterior is correlated here, so the mean-field fit is strictly worse than the truth
    assert best > 1e-3
    # the mean-field variance under-estimates the marginal posterior variance
    assert (mf_var[0] < torch.diagonal(cov[0])).all()


def test_posterior_and_evidence_against_monte_carlo():
    lg = random_linear(2, 3, 0.7, seed=3)
    gen = torch.Generator().manual_seed(4)
    z, y = lg.sample(200_000, gen)
    # E[z | y] is linear in y: the least-squares regression of z on (y, 1) recovers it
    design = torch.cat([y, torch.ones(len(y), 1, dtype=D64)], dim=1)
    coef = torch.linalg.lstsq(design, z).solution
    probe = linear_data(lg, 5, seed=9)
    mean, cov = lg.posterior(probe)
    mc_mean = torch.cat([probe, torch.ones(5, 1, dtype=D64)], 1) @ coef
    torch.testing.assert_close(mc_mean, mean, rtol=0, atol=0.02)
    resid = z - design @ coef
    torch.testing.assert_close(resid.T @ resid / len(z), cov[0], rtol=0, atol=0.01)
    # log p(y) = log E_{p(z)} p(y | z)
    z_prior = torch.randn(200_000, 1, 2, generator=gen, dtype=D64)
    mc = torch.logsumexp(lg.log_likelihood(z_prior, probe), 0) - math.log(200_000)
    torch.testing.assert_close(mc, lg.log_marginal(probe), rtol=0, atol=0.02)


def test_gaussian_kl_matches_torch():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(4, 3, generator=gen, dtype=D64), torch.randn(4, 3, generator=gen, dtype=D64)
    r1, r2 = torch.randn(4, 3, 3, generator=gen, dtype=D64), torch.randn(4, 3, 3, generator=gen, dtype=D64)
    c1 = r1 @ r1.mT + 0.5 * torch.eye(3, dtype=D64)
    c2 = r2 @ r2.mT + 0.5 * torch.eye(3, dtype=D64)
    want = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(m1, c1), torch.distributions.MultivariateNormal(m2, c2)
    )
    torch.testing.assert_close(gaussian_kl(m1, c1, m2, c2), want, rtol=1e-10, atol=1e-10)


def test_linearize_a_linear_sigma_cvae_with_conditioning():
    torch.manual_seed(0)
    model = SigmaCVAE(2, 3, 2, encoder_widths=(4,), decoder_widths=(), noise=FixedNoise(0.4)).double()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 2, generator=gen, dtype=D64), torch.randn(6, 3, generator=gen, dtype=D64)
    lg = linearize(model_target(model, x, y, dtype=D64))
    layer = model.decoder[0]
    torch.testing.assert_close(lg.weight, layer.weight[:, 2:].detach(), rtol=0, atol=1e-12)  # shared W
    torch.testing.assert_close(lg.bias, x @ layer.weight[:, :2].detach().T + layer.bias.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(lg.noise_cov, 0.16 * torch.eye(3, dtype=D64), rtol=0, atol=1e-7)  # sigma was float32


def test_linearize_refuses_a_tanh_decoder():
    model = tanh_model(1)
    target = model_target(model, torch.zeros(3, 0, dtype=D64), torch.zeros(3, 3, dtype=D64))
    with pytest.raises(ConfigError, match="not linear"):
        linearize(target)


def test_bad_shapes():
    with pytest.raises(ConfigError):
        LinearGaussian(torch.ones(3, 2), torch.ones(2), torch.eye(3))
    with pytest.raises(ConfigError):
        LinearGaussian(torch.ones(3, 2), torch.ones(3), -torch.eye(3))
    with pytest.raises(DataError):
        random_linear(2, 3, 1.0).posterior(torch.ones(4, 2))
