"""KSG mutual information against Gaussian closed forms; Lagging Inference Networks' MI; KL per
dimension and active units by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics import (
    active_units,
    aggregate_posterior_mutual_information,
    kl_per_dimension,
    ksg_mutual_information,
    latent_mutual_information,
)

D64 = torch.float64


def gaussian_mi(cov: np.ndarray, p: int) -> float:
    """I(x; z) = ½ log(det Σ_xx det Σ_zz / det Σ) for jointly Gaussian (x, z), x the first p coordinates."""
    return 0.5 * math.log(np.linalg.det(cov[:p, :p]) * np.linalg.det(cov[p:, p:]) / np.linalg.det(cov))


@pytest.mark.parametrize("rho", [0.6, 0.8, 0.9])
def test_ksg_scalar_gaussian_pair(rho):
    # KSG's sampling SD at n = 2 x 4000 is about 0.012 nats here, whatever rho
    rng = np.random.default_rng(0)
    n = 4000
    estimates = []
    for _ in range(2):
        u = rng.standard_normal(n)
        z = rho * u + math.sqrt(1 - rho**2) * rng.standard_normal(n)
        estimates.append(ksg_mutual_information(u, z))
    exact = -0.5 * math.log(1 - rho**2)
    assert abs(np.mean(estimates) - exact) < 0.03
    if exact > 0.5:
        assert np.mean(estimates) == pytest.approx(exact, rel=0.05)


def test_ksg_scalar_matches_sklearn():
    # for one x column, sklearn's KSG (algorithm 1, max-norm, k = 3) is the same estimator
    sklearn_fs = pytest.importorskip("sklearn.feature_selection")
    rng = np.random.default_rng(5)
    u = rng.standard_normal(1000)
    z = 0.7 * u + 0.5 * rng.standard_normal(1000)
    ref = sklearn_fs.mutual_info_regression(u[:, None], z, n_neighbors=3, random_state=0)[0]
    assert ksg_mutual_information(u, z, k=3) == pytest.approx(ref, abs=1e-9)


def test_ksg_vector_x():
    # x = (u, v) ~ N(0, diag(1, 2^2)), z = u - 0.5 v + 0.6 e: closed form from the covariance determinants
    rng = np.random.default_rng(1)
    n = 4000
    a = np.array([1.0, -0.5])
    sd = np.array([1.0, 2.0])
    cov = np.zeros((3, 3))
    cov[:2, :2] = np.diag(sd**2)
    cov[:2, 2] = cov[2, :2] = a * sd**2
    cov[2, 2] = a @ np.diag(sd**2) @ a + 0.36
    exact = gaussian_mi(cov, 2)
    assert exact == pytest.approx(0.5 * math.log(cov[2, 2] / 0.36))
    estimates = []
    for _ in range(2):
        x = rng.standard_normal((n, 2)) * sd
        z = x @ a + 0.6 * rng.standard_normal(n)
        estimates.append(ksg_mutual_information(x, z))
    assert np.mean(estimates) == pytest.approx(exact, rel=0.05)
    # standardising makes the estimate invariant to rescaling a column
    x[:, 1] *= 100.0
    assert ksg_mutual_information(x, z) == pytest.approx(estimates[-1], abs=1e-6)


def test_ksg_independent_is_near_zero_and_per_latent_helper():
    rng = np.random.default_rng(2)
    n = 3000
    x = rng.standard_normal((n, 2))
    z = np.stack([x[:, 0] + 0.5 * rng.standard_normal(n), rng.standard_normal(n)], 1)  # informative, noise
    mi = latent_mutual_information(torch.tensor(x), torch.tensor(z))
    assert mi.shape == (2,)
    assert mi[0] == pytest.approx(0.5 * math.log(1.25 / 0.25), rel=0.05)
    assert abs(mi[1]) < 0.02


# With one z per point the estimate carries the Monte-Carlo error of the entropy term,
# mean over B of (|eps|^2 - d) / 2, whose SD is sqrt(d / 2) / sqrt(B): 0.039 for d = 3, B = 1000.


def test_lagging_mi_zero_when_every_posterior_is_the_prior():
    loc, scale = torch.zeros(1000, 3, dtype=D64), torch.ones(1000, 3, dtype=D64)
    assert abs(float(aggregate_posterior_mutual_information(loc, scale))) < 0.12


def test_lagging_mi_log_b_for_separated_tight_posteriors():
    b = 1000
    loc = torch.arange(b, dtype=D64)[:, None].repeat(1, 3) * 10.0
    scale = torch.full((b, 3), 0.01, dtype=D64)
    mi = float(aggregate_posterior_mutual_information(loc, scale))
    assert mi == pytest.approx(math.log(b), abs=0.12)
    # per-batch evaluation (He et al. on validation data): each batch of 250 is bounded by log 250
    per_batch = float(aggregate_posterior_mutual_information(loc, scale, batch_size=250))
    assert per_batch == pytest.approx(math.log(250), abs=0.12)


def test_lagging_mi_is_differentiable():
    loc = torch.randn(20, 2, dtype=D64, requires_grad=True)
    log_scale = torch.full((20, 2), -1.0, dtype=D64, requires_grad=True)
    aggregate_posterior_mutual_information(loc, log_scale.exp()).backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0
    assert torch.isfinite(log_scale.grad).all()


def test_kl_per_dimension_by_construction():
    loc = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=D64)
    scale = torch.tensor([[1.0, 1.0, 0.5], [1.0, 1.0, 0.5]], dtype=D64)
    kl = kl_per_dimension(loc, scale)
    expected = [0.5, 0.0, 0.5 * (0.25 - 1.0) - math.log(0.5)]
    assert kl.tolist() == pytest.approx(expected, abs=1e-12)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0))
    assert (kl - ref.mean(0)).abs().max() < 1e-12


def test_active_units_by_construction():
    g = torch.Generator().manual_seed(0)
    n = 500
    loc = torch.stack(
        [
            torch.randn(n, generator=g, dtype=D64),  # varies with x: active
            0.01 * torch.randn(n, generator=g, dtype=D64),  # variance ~1e-4: collapsed
            torch.full((n,), 3.0, dtype=D64),  # constant: collapsed
        ],
        1,
    )
    au = active_units(loc)
    assert au.count == 1 and au.mask.tolist() == [True, False, False] and au.threshold == 0.01
    assert au.variance[0] == pytest.approx(float(loc[:, 0].var()))
    # the threshold is inclusive: variance exactly 0.01 counts as active
    edge = torch.tensor([[0.1], [-0.1]], dtype=D64) * math.sqrt(0.5)  # unbiased variance 0.01
    assert active_units(edge, threshold=0.01 - 1e-15).count == 1


def test_bad_arguments():
    x, z = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ConfigError, match="k must be"):
        ksg_mutual_information(x, z, k=0)
    with pytest.raises(ConfigError, match="same number of rows"):
        ksg_mutual_information(x, z[:9])
    with pytest.raises(DataError, match="NaN"):
        ksg_mutual_information(x, np.full(10, np.nan))
    with pytest.raises(ConfigError, match="loc and scale"):
        kl_per_dimension(torch.zeros(3, 2), torch.ones(3, 1))
    with pytest.raises(DataError, match="positive"):
        aggregate_posterior_mutual_information(torch.zeros(3, 2), torch.zeros(3, 2))
