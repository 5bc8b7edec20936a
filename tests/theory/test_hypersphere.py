"""Berger & Sebag (2020) Theorem 1 / Eq. (8): closed form, Monte Carlo, optimal radius, threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from pyrovae.errors import ConfigError
from pyrovae.theory import hypersphere as hs


def _log_mgf_reference(kappa: float, D: int) -> float:
    """log 0F1(; D/2; kappa^2/4) by a log-space power series with many terms (independent reference)."""
    if kappa == 0:
        return 0.0
    b, x = D / 2.0, kappa * kappa / 4.0
    k = np.arange(0, 4000)
    terms = k * np.log(x) - special.gammaln(k + 1) - (special.gammaln(b + k) - special.gammaln(b))
    return float(special.logsumexp(terms))


@pytest.mark.parametrize("D", [2, 3, 5, 10, 50, 400, 1000])
@pytest.mark.parametrize("kappa", [0.0, 1e-6, 0.3, 5.0, 30.0, 150.0, 600.0])
def test_log_angular_mgf_matches_reference_series(D, kappa):
    got = float(hs.log_angular_mgf(kappa, D))
    want = _log_mgf_reference(kappa, D)
    assert got == pytest.approx(want, rel=1e-11, abs=1e-24)


@pytest.mark.parametrize("D,kappa", [(2, 3.0), (3, 0.7), (5, 4.0)])
def test_log_angular_mgf_matches_eq8_quadrature(D, kappa):
    """The normalised angular integral of Eq. (8), by direct quadrature over phi."""
    num = integrate.quad(lambda p: np.sin(p) ** (D - 2) * np.exp(kappa * np.cos(p)), 0, np.pi,
                         epsabs=0, epsrel=1e-13)[0]
    den = integrate.quad(lambda p: np.sin(p) ** (D - 2), 0, np.pi, epsabs=0, epsrel=1e-13)[0]
    assert float(hs.log_angular_mgf(kappa, D)) == pytest.approx(math.log(num / den), rel=1e-10)


def test_small_radius_expansion_gives_sqrt_D():
    """gap(r) = r^2/(2 s^2) (R^2/(D s^2) - 1) + O(r^4): the curvature that sets the exact threshold."""
    D, R, s, r = 7, 1.3, 0.4, 1e-4
    want = r**2 / (2 * s**2) * (R**2 / (D * s**2) - 1)
    assert float(hs.log_likelihood_gap(r, D=D, R=R, sigma=s)) == pytest.approx(want, rel=1e-6)


def test_log_likelihood_is_a_normalised_density():
    """Integrating the closed form over R^D in polar coordinates gives 1 (checks every constant)."""
    D, r, s = 3, 0.7, 0.4
    area = 2 * math.pi ** (D / 2) / math.gamma(D / 2)
    def density(rho):
        return area * rho ** (D - 1) * math.exp(float(hs.log_likelihood(r, D=D, R=rho, sigma=s)))

    total = integrate.quad(density, 0, r + 12 * s, epsrel=1e-12)[0]
    assert total == pytest.approx(1.0, abs=1e-9)


def test_eq8_against_monte_carlo_over_the_decoder_sphere():
    """Eq. (4) by Monte Carlo (mu uniform on S(r), Gaussian kernel at ||x|| = R) vs the closed form."""
    D, R, s, r = 5, 1.0, 0.4, 0.7
    est, se = hs.monte_carlo_log_likelihood(r, D=D, R=R, sigma=s, num_samples=200_000, seed=1)
    exact = float(hs.log_likelihood(r, D=D, R=R, sigma=s))
    assert se < 0.01
    assert abs(est - exact) < 4 * se


def test_model_samples_have_the_closed_form_radial_law():
    """Samples of the generative model (uniform on S(r) + N(0, s^2 I)) vs the CDF of ||x|| from Eq. (8)."""
    D, r, s, N = 4, 1.2, 0.5, 100_000
    rng = np.random.default_rng(3)
    g = rng.standard_normal((N, D))
    x = r * g / np.linalg.norm(g, axis=1, keepdims=True) + s * rng.standard_normal((N, D))
    rho = np.linalg.norm(x, axis=1)
    area = 2 * math.pi ** (D / 2) / math.gamma(D / 2)
    for t in (0.9, 1.3, 1.8):
        p = integrate.quad(lambda u: area * u ** (D - 1) * math.exp(float(hs.log_likelihood(r, D=D, R=u, sigma=s))),
                           0, t, epsrel=1e-12)[0]
        se = math.sqrt(p * (1 - p) / N)
        assert abs((rho <= t).mean() - p) < 4 * se


@pytest.mark.parametrize("D,R", [(2, 1.0), (3, 0.5), (5, 2.5), (10, 1.0), (50, 7.0)])
def test_numerical_threshold_is_R_over_sqrt_D_not_sqrt_D_minus_1(D, R):
    res = hs.collapse_threshold(D, R, rtol=1e-7)
    assert res.sigma_low < res.sigma_high
    assert (res.sigma_high - res.sigma_low) <= 1e-7 * res.sigma_high
    # the bisection brackets the exact threshold R/sqrt(D) within its resolution
    exact = hs.exact_threshold(D, R)
    assert abs(res.sigma / exact - 1) < 2e-7
    # Theorem 1's R/sqrt(D-1) is strictly larger: a sufficient, not a tight, condition
    bound = hs.theorem1_threshold(D, R)
    assert res.sigma_high < bound * (1 - 0.005)


@pytest.mark.parametrize("D", [2, 3, 5, 10, 50])
def test_theorem1_sufficient_condition_holds(D):
    R = 1.7
    for factor in (1.0, 1.5, 4.0):
        assert hs.optimal_radius(D=D, R=R, sigma=factor * hs.theorem1_threshold(D, R)) == 0.0
    # and also just above the exact threshold, where Theorem 1 says nothing
    assert hs.optimal_radius(D=D, R=R, sigma=1.001 * hs.exact_threshold(D, R)) == 0.0


@pytest.mark.parametrize("D", [2, 3, 5, 10, 50])
@pytest.mark.parametrize("factor", [0.99, 0.7, 0.3])
def test_below_threshold_the_optimal_radius_is_positive_and_stationary(D, factor):
    R = 2.0
    s = factor * hs.exact_threshold(D, R)
    r = hs.optimal_radius(D=D, R=R, sigma=s)
    assert 0.0 < r < R
    # first-order condition of Eq. (8)/(9): r = R * I_{D/2}(k) / I_{D/2-1}(k), k = r R / s^2
    assert r == pytest.approx(R * float(hs.bessel_ratio(r * R / s**2, D)), rel=1e-6)
    # and it beats the collapsed decoder
    assert float(hs.log_likelihood_gap(r, D=D, R=R, sigma=s)) > 0.0


def test_optimal_radius_tends_to_R_for_sharp_decoders():
    """The paper: 'the optimal value of r asymptotically converges toward R = r'."""
    for D in (2, 10):
        rs = [hs.optimal_radius(D=D, R=1.0, sigma=s) for s in (0.2, 0.05, 0.01)]
        assert rs[0] < rs[1] < rs[2] < 1.0
        assert rs[2] > 0.99


def test_log_0f1_is_concave_so_the_optimum_is_unique():
    """Concavity of log 0F1(; D/2; x) in x makes Eq. (8) concave in r^2 (one maximiser, continuous transition)."""
    x = np.linspace(0.0, 400.0, 2001)
    for D in (2, 3, 10, 50):
        f = hs.log_angular_mgf(2 * np.sqrt(x), D)
        assert np.all(np.diff(f, 2) <= 1e-12)


def test_grid_collapse_boundary_is_sqrt_D():
    dims = [2, 3, 5, 10, 20]
    ratios = np.linspace(0.0, 6.0, 241)                      # step 0.025
    best = hs.optimal_radius_grid(dims, ratios, n_r=200)
    for row, D in zip(best, dims):
        first = ratios[np.argmax(row > 0)]
        assert abs(first - math.sqrt(D)) <= 0.06              # grid resolution in R/sigma and r/R
        assert np.all(row[ratios < math.sqrt(D) - 0.06] == 0)


@pytest.mark.parametrize("call", [
    lambda: hs.log_likelihood(0.5, D=1, R=1.0, sigma=1.0),
    lambda: hs.log_likelihood(0.5, D=2.5, R=1.0, sigma=1.0),
    lambda: hs.log_likelihood(0.5, D=3, R=-1.0, sigma=1.0),
    lambda: hs.log_likelihood(0.5, D=3, R=1.0, sigma=0.0),
    lambda: hs.log_likelihood(-0.1, D=3, R=1.0, sigma=1.0),
    lambda: hs.optimal_radius(D=3, R=0.0, sigma=1.0),
    lambda: hs.optimal_radius(D=3, R=1.0, sigma=float("nan")),
    lambda: hs.collapse_threshold(1, 1.0),
    lambda: hs.collapse_threshold(3, -2.0),
    lambda: hs.theorem1_threshold(3, 0.0),
    lambda: hs.monte_carlo_log_likelihood(0.5, D=3, R=1.0, sigma=1.0, num_samples=1),
    lambda: hs.optimal_radius_grid([3], [-1.0, 2.0]),
    lambda: hs.log_angular_mgf(1.0, 0),
    lambda: hs.collapse_threshold(3, 1.0, rtol=0.0),
])
def test_impossible_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()
