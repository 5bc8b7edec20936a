"""Dai, Wang & Wipf (2020) Eqs. (5)-(7), Proposition 1: closed-form energy, gradient and Hessian."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from scipy import integrate, stats

from pyrovae.errors import ConfigError
from pyrovae.theory import soft_threshold as st

ALPHAS_POS = [0.1, 0.5, 2.0]


@pytest.mark.parametrize("m,s,alpha", [(0.3, 0.8, 0.5), (-1.2, 0.4, 0.2), (2.0, 1.5, 1.0), (0.1, 0.05, 0.3),
                                       (0.7, 1.1, 0.0)])
def test_soft_threshold_moments_match_quadrature(m, s, alpha):
    def pi(u):
        return math.copysign(max(abs(u) - alpha, 0.0), u)

    pts = sorted({m, alpha, -alpha})
    lo, hi = m - 12 * s, m + 12 * s
    e1 = integrate.quad(lambda u: pi(u) * stats.norm.pdf(u, m, s), lo, hi, points=pts, epsabs=1e-14, limit=200)[0]
    e2 = integrate.quad(lambda u: pi(u) ** 2 * stats.norm.pdf(u, m, s), lo, hi, points=pts, epsabs=1e-14, limit=200)[0]
    t = torch.tensor([m, s * s], dtype=torch.float64)
    got1, got2 = st.soft_threshold_moments(t[0], t[1], alpha)
    assert float(got1) == pytest.approx(e1, abs=1e-10)
    assert float(got2) == pytest.approx(e2, abs=1e-10)


def _generic_point(n=2, d=2, kappa=1, seed=0) -> st.VAEParams:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return st.VAEParams(W=0.8 * r(d, kappa) + 0.5, b=0.3 * r(d), mu_z=r(n, kappa),
                        sigma_z=0.5 + 0.5 * r(n, kappa).abs(), gamma=torch.tensor(0.7, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_closed_form_energy_matches_monte_carlo(alpha):
    p = _generic_point()
    est, se = st.vae_energy_monte_carlo(p, alpha, num_samples=200_000, seed=2)
    assert se < 0.05
    assert abs(float(st.vae_energy(p, alpha)) - est) < 4 * se


def test_autograd_gradient_and_hessian_match_finite_differences():
    p = _generic_point(n=3, d=2, kappa=2, seed=1)
    x = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.2, -1.0]], dtype=torch.float64)
    v = p.flatten()
    h = 1e-6
    eye = torch.eye(v.numel(), dtype=torch.float64)
    fd_grad = torch.stack([(st.vae_energy(v + h * e, 0.3, x) - st.vae_energy(v - h * e, 0.3, x)) / (2 * h)
                           for e in eye])
    assert torch.allclose(st.gradient(v, 0.3, x), fd_grad, rtol=1e-6, atol=1e-7)
    h = 1e-5
    fd_hess = torch.stack([(st.gradient(v + h * e, 0.3, x) - st.gradient(v - h * e, 0.3, x)) / (2 * h) for e in eye])
    H = st.hessian(v, 0.3, x)
    assert torch.allclose(H, H.T, atol=1e-12)
    assert torch.allclose(H, fd_hess, rtol=1e-5, atol=1e-6)


def test_collapsed_point_is_eq7_with_the_stated_energy():
    x = st.two_point_data()
    p = st.collapsed_point()
    assert torch.equal(p.W, torch.zeros(2, 1, dtype=torch.float64))
    assert torch.equal(p.b, torch.zeros(2, dtype=torch.float64))
    assert float(p.gamma) == 1.0                                     # gamma_bar = (2 + 2) / (n d)
    n, d, k = 2, 2, 1
    for alpha in [0.0] + ALPHAS_POS:
        # Eq. (6) as printed: nd + n*kappa (the paper's "nd" drops the KL's -kappa per point)
        assert float(st.vae_energy(p, alpha)) == pytest.approx(n * d + n * k, abs=1e-14)
        # q = prior, decoder mean = xbar: -ELBO is -sum_i log N(x_i; xbar, gamma_bar I)
        nll = -torch.distributions.Normal(p.b, p.gamma.sqrt()).log_prob(x).sum()
        assert float(st.negative_elbo(p, alpha)) == pytest.approx(float(nll), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0] + ALPHAS_POS)
def test_gradient_vanishes_at_proposition1_point(alpha):
    assert st.gradient_norm(st.collapsed_point(), alpha) < 1e-12
    # also for other data and latent sizes (Eq. 7 is stationary in general)
    x = torch.tensor([[0.3, 1.0, -2.0], [1.5, -0.5, 0.0], [-0.2, 0.4, 1.1], [2.0, 2.0, 0.3]], dtype=torch.float64)
    assert st.gradient_norm(st.collapsed_point(x, kappa=2), alpha, x) < 1e-12


@pytest.mark.parametrize("alpha", ALPHAS_POS)
def test_hessian_at_eq7_is_psd_with_zero_W_block_for_alpha_positive(alpha):
    p = st.collapsed_point()
    H = st.hessian(p, alpha)
    eig = st.hessian_eigenvalues(p, alpha)
    # Appendix B.2's block structure: W block (coordinates 0, 1) exactly 0; b: 2n/gamma I; mu_z: 2 I;
    # sigma_z: (2 + 2/sigma^2) I; gamma: nd/gamma^2 — with gamma_bar = 1, n = d = 2
    assert torch.all(H[:2] == 0) and torch.all(H[:, :2] == 0)
    assert torch.allclose(eig, torch.tensor([0, 0, 2, 2, 4, 4, 4, 4, 4], dtype=torch.float64), atol=1e-10)
    assert float(eig.min()) > -1e-12
    assert float(torch.linalg.eigvalsh(H[2:, 2:]).min()) > 1.0      # positive definite off the W block


def test_eq7_is_a_strict_local_minimum_for_alpha_positive():
    """Second order is flat along W, so check strictness directly (Appendix B.2: 'the gradient points back')."""
    alpha = 0.1
    p = st.collapsed_point()
    v0 = p.flatten()
    e0 = st.vae_energy(v0, alpha)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        u = torch.randn(v0.shape, generator=g, dtype=torch.float64)
        for scale in (1e-3, 3e-2):
            assert float(st.vae_energy(v0 + scale * u / u.norm(), alpha) - e0) > 0
    for w in ([0.05, 0.0], [0.0, -0.08], [0.06, 0.06]):
        v = v0.clone()
        v[:2] = torch.tensor(w, dtype=torch.float64)
        assert float(st.vae_energy(v, alpha) - e0) > 0                   # strictly higher, though flat
        grad_w = st.gradient(v, alpha)[:2]
        assert float(grad_w @ v[:2]) > 0                                 # the gradient points back to W = 0


def test_eq7_is_a_saddle_for_the_affine_decoder():
    p = st.collapsed_point()
    eig = st.hessian_eigenvalues(p, 0.0)
    assert float(eig[0]) == pytest.approx(3 - math.sqrt(17), abs=1e-10)   # W-mu_z coupling: 3 -+ sqrt(17)
    assert float(eig[-1]) == pytest.approx(3 + math.sqrt(17), abs=1e-10)
    assert int((eig < 0).sum()) == 1
    H = st.hessian(p, 0.0)
    vecs = torch.linalg.eigh(H)[1]
    v0 = p.flatten()
    e0 = st.vae_energy(v0, 0.0)
    for t in (1e-3, -1e-3):
        assert float(st.vae_energy(v0 + t * vecs[:, 0], 0.0) - e0) < 0      # a descent direction escapes


@pytest.mark.parametrize("alpha", [0.0] + ALPHAS_POS)
def test_perfect_reconstruction_family_is_lower_and_unbounded_below(alpha):
    e_collapsed = float(st.vae_energy(st.collapsed_point(), alpha))
    deltas = (1e-1, 1e-2, 1e-3, 1e-4)
    energies = [float(st.vae_energy(st.perfect_reconstruction_point(alpha, d), alpha)) for d in deltas]
    assert energies[0] < e_collapsed
    assert all(a > b for a, b in zip(energies, energies[1:]))
    # Appendix B.1: energy = 4 log(delta) + Theta(1); the constants, from gamma ~ (alpha+1)^2 delta^2
    assert energies[-1] - 4 * math.log(1e-4) == pytest.approx(6 + 8 * math.log(alpha + 1), abs=1e-5)
    e_paper = float(st.vae_energy(st.perfect_reconstruction_point(alpha, 1e-4, gamma="paper"), alpha))
    assert e_paper - 4 * math.log(1e-4) == pytest.approx(4 + 4 * math.log(2) + 8 * math.log(alpha + 1), abs=1e-5)
    assert e_paper > energies[-1]                                        # the paper's gamma is not the optimal one


def test_optimal_gamma_is_stationary():
    p = st.perfect_reconstruction_point(0.5, 0.2)
    assert float(p.gamma) == pytest.approx(float(st.optimal_gamma(p, 0.5)), rel=1e-14)
    assert abs(float(st.gradient(p, 0.5)[-1])) < 1e-10


@pytest.mark.parametrize("call", [
    lambda: st.vae_energy(st.collapsed_point(), -0.1),
    lambda: st.soft_threshold(torch.zeros(2), float("nan")),
    lambda: st.perfect_reconstruction_point(0.5, 0.0),
    lambda: st.perfect_reconstruction_point(0.5, 0.1, gamma="best"),
    lambda: st.collapsed_point(kappa=0),
    lambda: st.collapsed_point(torch.ones(3, 2, dtype=torch.float64)),
    lambda: st.collapsed_point(torch.ones(3, dtype=torch.float64)),
    lambda: st.vae_energy(torch.zeros(7, dtype=torch.float64), 0.5),
    lambda: st.vae_energy(replace(st.collapsed_point(), gamma=torch.tensor(0.0, dtype=torch.float64)), 0.5),
    lambda: st.vae_energy(replace(st.collapsed_point(), sigma_z=torch.zeros(2, 1, dtype=torch.float64)), 0.5),
    lambda: st.vae_energy(replace(st.collapsed_point(), W=torch.zeros(3, 1, dtype=torch.float64)), 0.5),
    lambda: st.vae_energy(st.VAEParams.unflatten(torch.ones(9, dtype=torch.float64), 2, 2, 1), 0.5,
                          torch.ones(2, 3, dtype=torch.float64)),
])
def test_impossible_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()
