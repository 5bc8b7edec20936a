"""The separability check (Yacoby, Pan & Doshi-Velez 2021, Sec. 7, guideline 1): balanced accuracy and mean entropy of a
cross-validated logistic regression of y | x."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.separability import separability


def test_well_separated_classes_are_easy_and_certain():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    x = rng.standard_normal((400, 2)) * 0.1 + np.where(y[:, None] == 1, 5.0, -5.0)
    s = separability(x, y)
    assert s.balanced_accuracy == 1.0 and s.normalised_entropy < 0.1 and s.classes == 2 and s.n == 400


def test_labels_independent_of_x_are_at_chance_with_maximal_entropy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 3))
    y = rng.integers(0, 3, 3000)
    s = separability(x, y, folds=3)
    assert abs(s.balanced_accuracy - 1 / 3) < 0.05 and s.normalised_entropy > 0.98
    assert abs(s.mean_entropy - s.normalised_entropy * math.log(3)) < 1e-12


def test_overlapping_gaussians_match_the_bayes_entropy():
    """Two unit-variance Gaussians at ±1: the logistic model is exact, p(y=1|x) = sigmoid(2x)."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 20000)
    x = rng.standard_normal(20000) + np.where(y == 1, 1.0, -1.0)
    s = separability(x, y)
    p = 1 / (1 + np.exp(-2 * x))
    bayes_entropy = float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).mean())
    from scipy.stats import norm
    assert abs(s.balanced_accuracy - norm.cdf(1.0)) < 0.015  # Bayes accuracy Φ(1) ≈ 0.841
    assert abs(s.mean_entropy - bayes_entropy) < 0.01


@pytest.mark.parametrize("x, y, err", [
    (np.zeros((10, 2)), np.zeros(10), DataError),  # one class
    (np.zeros((10, 2)), np.r_[np.zeros(9), 1], DataError),  # a class smaller than the folds
    (np.zeros((10, 2)), np.linspace(0, 1, 10), DataError),  # not class labels
    (np.zeros((10, 2)), np.zeros(9), DataError),  # length mismatch
    (np.full((10, 2), np.nan), np.r_[np.zeros(5), np.ones(5)], DataError),
])
def test_bad_input(x, y, err):
    with pytest.raises(err):
        separability(x, y)
    with pytest.raises(ConfigError):
        separability(np.zeros((10, 1)), np.r_[np.zeros(5), np.ones(5)], folds=1)
