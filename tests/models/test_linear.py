"""Closed forms of Yacoby, Pan & Doshi-Velez's linear models against Monte Carlo, the posterior subpackage and a grid."""

import math

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import ConfigError, DataError
from pyrovae.models.linear import (
    CholeskyDecoder,
    CubeRootEncoder,
    ScalarDecoder,
    cholesky_mutual_information,
    cholesky_posterior,
    cube_root,
    linear_vae,
    posterior_matching_gap,
    scalar_mutual_information,
    vae_objective_gap,
)
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl, pedagogical_case1, pedagogical_case2
from pyrovae.posterior.grid import grid_posterior

A = torch.tensor([[0.75, 0.25], [1.5, -1.0]], dtype=torch.float64)
B = torch.tensor([0.006, 0.006], dtype=torch.float64)


def _draw(model, n, seed=0):
    """x ~ p_θ(x) by running the Pyro program with y unobserved."""
    pyro.set_rng_seed(seed)
    x = torch.zeros(n, 0, dtype=torch.float64)
    with torch.no_grad():
        tr = poutine.trace(model.model).get_trace(x)
    return tr.nodes["y"]["value"], tr.nodes["z"]["value"]


@pytest.mark.parametrize("theta", [0.0, 0.5, 0.9])
def test_scalar_marginal_is_sigma_for_every_theta(theta):
    model = linear_vae(ScalarDecoder(theta, 1.0))
    x, z = _draw(model, 40_000)
    assert float(x.var()) == pytest.approx(1.0, abs=0.03)
    assert float((x * z).mean()) == pytest.approx(theta, abs=0.02)  # Eq. 13's cross-covariance


def test_scalar_posterior_and_mi_against_exact_and_grid():
    theta, s = 0.8, 1.0
    dec = ScalarDecoder(theta, s)
    lg = LinearGaussian.from_decoder(dec)
    x = torch.tensor([[-1.5], [0.3], [2.0]], dtype=torch.float64)
    mean, cov = lg.posterior(x)
    torch.testing.assert_close(mean[:, 0], theta / s**2 * x[:, 0])  # Eq. 16
    torch.testing.assert_close(cov[:, 0, 0], torch.full((3,), (s**2 - theta**2) / s**2, dtype=torch.float64))
    ref = pedagogical_case1(theta, s)
    torch.testing.assert_close(ref.posterior(x)[0], mean)
    grid = grid_posterior(lg.as_target(x), on_flag="ignore")
    torch.testing.assert_close(grid.mean, mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(grid.log_evidence, lg.log_marginal(x), atol=1e-6, rtol=0)
    assert float(lg.mutual_information()) == pytest.approx(scalar_mutual_information(theta, s), rel=1e-10)
    assert scalar_mutual_information(0.0, s) == 0.0


def test_cholesky_marginal_independent_of_b_by_monte_carlo():
    want = A @ A.T + 0.01 * torch.eye(2, dtype=torch.float64)
    for b in (B, torch.tensor([0.0, 0.009], dtype=torch.float64)):
        dec = CholeskyDecoder(A, b, 0.1, learn="none")
        x, _ = _draw(linear_vae(dec), 40_000, seed=1)
        torch.testing.assert_close(torch.cov(x.T), want, atol=0.06, rtol=0.03)
        torch.testing.assert_close(LinearGaussian.from_decoder(dec).marginal_cov(), want)


def test_cholesky_mi_posterior_match_eq22_24_and_exact():
    dec = CholeskyDecoder(A, B, 0.1, learn="B")
    lg = LinearGaussian.from_decoder(dec)
    ref = pedagogical_case2(A, B, 0.1)
    x = torch.randn(5, 2, dtype=torch.float64)
    mean, cov = cholesky_posterior(A, B, 0.1, x)
    torch.testing.assert_close(lg.posterior(x)[0], mean)
    torch.testing.assert_close(lg.posterior(x)[1][0], cov)
    torch.testing.assert_close(ref.posterior(x)[0], mean)
    torch.testing.assert_close(lg.mutual_information(), cholesky_mutual_information(A, B, 0.1))


def test_cholesky_grid_posterior_with_broad_noise():
    a = torch.tensor([[0.6, 0.2], [0.3, -0.5]], dtype=torch.float64)
    b = torch.tensor([0.3, 0.1], dtype=torch.float64)
    lg = LinearGaussian.from_decoder(CholeskyDecoder(a, b, 1.0, learn="none"))
    x = torch.tensor([[0.5, -0.7], [1.2, 0.4]], dtype=torch.float64)
    grid = grid_posterior(lg.as_target(x), limit=7.0, resolution=201, on_flag="ignore")
    mean, cov = cholesky_posterior(a, b, 1.0, x)
    torch.testing.assert_close(grid.mean, mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(grid.cov, cov.expand(2, 2, 2), atol=1e-4, rtol=0)


def test_best_mean_field_gap_is_the_minimum_and_0532():
    dec = CholeskyDecoder(A, B, 0.1, learn="A")
    w, nv = dec.weight().detach(), dec.noise_var().detach()
    gap = posterior_matching_gap(w, nv)
    assert float(gap) == pytest.approx(0.532, abs=5e-4)  # L(theta_GT, phi_GT) of Sec. 1
    lg = LinearGaussian.from_decoder(dec)
    x = torch.zeros(1, 2, dtype=torch.float64)
    mean, cov = lg.posterior(x)
    mf_mean, mf_var = lg.mean_field(x)
    best = gaussian_kl(mf_mean, torch.diag_embed(mf_var), mean, cov)
    torch.testing.assert_close(best[0], gap)
    for f in (0.8, 1.25):  # any other diagonal does worse (App. C.3)
        for i in range(2):
            v = mf_var.clone()
            v[0, i] *= f
            assert float(gaussian_kl(mf_mean, torch.diag_embed(v), mean, cov)[0]) > float(gap)
    data_cov = A @ A.T + 0.01 * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(vae_objective_gap(w, nv, data_cov), gap)


def test_bad_input():
    with pytest.raises(ConfigError):
        ScalarDecoder(1.0, 1.0)
    with pytest.raises(ConfigError):
        CholeskyDecoder(A, torch.tensor([0.02, 0.0]), 0.1)
    with pytest.raises(ConfigError):
        CholeskyDecoder(A, B, 0.1, learn="C")
    with pytest.raises(ConfigError):
        LinearGaussian.from_decoder(CholeskyDecoder(A, B, 0.1, cube=True))


def test_elbo_gradients_reach_a_and_encoder():
    model = linear_vae(CholeskyDecoder(A, B, 0.1, learn="A"))
    x = torch.zeros(8, 0, dtype=torch.float64)
    y = torch.randn(8, 2, dtype=torch.float64)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    assert model.decoder.a.grad is not None and model.encoder.loc.weight.grad is not None
    assert math.isfinite(float(loss.detach()))


def test_cube_root_inverts_the_cube_with_a_finite_slope_at_zero():
    u = torch.linspace(-200.0, 200.0, 401, dtype=torch.float64)
    exact_root = torch.sign(u) * u.abs().pow(1.0 / 3.0)
    assert float((cube_root(u) - exact_root).abs().max()) <= 0.1 + 1e-12  # δ^(1/3) = 0.1
    torch.testing.assert_close(cube_root(-u), -cube_root(u))
    assert float(cube_root(torch.tensor(27.0, dtype=torch.float64))) == pytest.approx(3.0, abs=0.1)
    z = torch.tensor([0.0, 1e-7, -1e-7], dtype=torch.float64, requires_grad=True)
    cube_root(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad[1:], torch.full((2,), 1e-3 ** (-2.0 / 3.0) / 3.0, dtype=torch.float64), rtol=1e-3, atol=0)


def test_cube_root_encoder_halves_sigmoid_and_cube_root():
    torch.manual_seed(0)
    enc = CubeRootEncoder(2, 2)
    x = torch.randn(5, 2) * 100.0
    u = enc.first(x)
    h = torch.relu(enc.second(torch.cat([torch.sigmoid(u[:, :2]), cube_root(u[:, 2:])], -1)))
    loc, scale = enc(x)
    torch.testing.assert_close(loc, enc.loc(h))
    torch.testing.assert_close(scale, torch.exp(0.5 * enc.log_var(h)))
    with pytest.raises(ConfigError):
        CubeRootEncoder(2, 2, hidden=3)


@pytest.mark.parametrize("fn", ["mi", "posterior"])
@pytest.mark.parametrize("a, b, match", [
    (A, torch.diag(B), "pass its diagonal"),  # a full B matrix: torch.diag would read its diagonal silently
    (A, B[:1], "pass its diagonal"),
    (A[0], B, "square"),
    (torch.ones(2, 3, dtype=torch.float64), B, "square"),
    (A, torch.tensor([0.005, 0.02], dtype=torch.float64), r"\[0, sigma_eps\^2\)"),  # B > sigma^2: negative noise variance
    (A, torch.tensor([-0.001, 0.005], dtype=torch.float64), r"\[0, sigma_eps\^2\)"),
    (A, torch.tensor([float("nan"), 0.005], dtype=torch.float64), "finite"),
])
def test_cholesky_functions_refuse_bad_parameters(fn, a, b, match):
    with pytest.raises(ConfigError, match=match):
        if fn == "mi":
            cholesky_mutual_information(a, b, 0.1)
        else:
            cholesky_posterior(a, b, 0.1, torch.zeros(3, 2, dtype=torch.float64))


def test_cholesky_functions_refuse_bad_sigma_and_x():
    with pytest.raises(ConfigError, match="sigma_eps must be positive"):
        cholesky_mutual_information(A, B, 0.0)
    with pytest.raises(DataError, match="2 columns"):
        cholesky_posterior(A, B, 0.1, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(DataError, match="NaN"):
        cholesky_posterior(A, B, 0.1, torch.full((3, 2), float("nan"), dtype=torch.float64))
