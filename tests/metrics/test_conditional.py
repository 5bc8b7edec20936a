"""Conditional mean and SD from draws, and their MSE against the truth (Liu & Wang 2025 App. F), by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics import ConditionalMoments, conditional_moments, moment_errors


def draws_with_exact_moments(mean: np.ndarray, sd: np.ndarray, s: int = 50, seed: int = 0) -> np.ndarray:
    """Draws (S, n, q) whose sample mean and (ddof = 1) SD are exactly ``mean`` and ``sd``."""
    e = np.random.default_rng(seed).standard_normal((s,) + mean.shape)
    e = (e - e.mean(0)) / e.std(0, ddof=1)
    return mean + sd * e


def test_moments_recovered_exactly():
    mean = np.array([[0.0, 1.0], [2.0, -3.0], [5.0, 0.5]])
    sd = np.array([[1.0, 0.1], [2.0, 0.5], [0.3, 3.0]])
    m = conditional_moments(torch.tensor(draws_with_exact_moments(mean, sd)))
    assert isinstance(m, ConditionalMoments) and m.num_samples == 50
    assert np.allclose(m.mean, mean, atol=1e-12) and np.allclose(m.sd, sd, atol=1e-12)
    # ddof = 0 rescales by sqrt((S - 1) / S)
    m0 = conditional_moments(draws_with_exact_moments(mean, sd), ddof=0)
    assert np.allclose(m0.sd, sd * np.sqrt(49 / 50), atol=1e-12)


def test_mse_of_mean_and_sd():
    # q = 1 given as (S, n): estimates off by known amounts
    true_mean = np.array([1.0, 2.0, 3.0, 4.0])
    true_sd = np.array([1.0, 1.0, 2.0, 2.0])
    est_mean = true_mean + np.array([0.1, -0.2, 0.0, 0.3])
    est_sd = true_sd + np.array([0.0, 0.5, -0.5, 0.0])
    draws = draws_with_exact_moments(est_mean[:, None], est_sd[:, None], s=500)[..., 0]
    err = moment_errors(draws, true_mean, true_sd)
    assert err.mse_mean == pytest.approx((0.01 + 0.04 + 0.0 + 0.09) / 4, abs=1e-12)
    assert err.mse_sd == pytest.approx((0.25 + 0.25) / 4, abs=1e-12)
    assert err.num_points == 4
    assert err.as_dict()["mse_sd"] == err.mse_sd
    # the same from precomputed moments
    assert moment_errors(conditional_moments(draws), true_mean, true_sd) == err


def test_perfect_estimate_has_zero_error():
    mean, sd = np.ones((5, 2)), np.full((5, 2), 0.7)
    err = moment_errors(draws_with_exact_moments(mean, sd), mean, sd)
    assert err.mse_mean < 1e-24 and err.mse_sd < 1e-24


def test_bad_arguments():
    draws = np.zeros((10, 4, 1))
    with pytest.raises(ConfigError, match="do not match"):
        moment_errors(draws, np.zeros(5), np.ones(5))
    with pytest.raises(ConfigError, match="more than 1 draws"):
        conditional_moments(np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="shape"):
        conditional_moments(np.zeros(4))
    bad = draws.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        conditional_moments(bad)
