"""Henze-Zirkler: the torch statistic against pingouin (p >= 2) and a numpy transcription (any p)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics import henze_zirkler, henze_zirkler_pvalue, henze_zirkler_test, hz_beta

D64 = torch.float64


def numpy_hz(x: np.ndarray) -> float:
    """REFERENCE_NOTES' formula, transcribed directly (explicit double loop, inverse covariance)."""
    n, p = x.shape
    s_inv = np.linalg.inv(np.atleast_2d(np.cov(x, rowvar=False, bias=True)))
    c = x - x.mean(0)
    b = (1 / math.sqrt(2)) * ((2 * p + 1) / 4) ** (1 / (p + 4)) * n ** (1 / (p + 4))
    d_j = np.array([c[j] @ s_inv @ c[j] for j in range(n)])
    pair = sum(math.exp(-(b**2) / 2 * ((x[j] - x[k]) @ s_inv @ (x[j] - x[k]))) for j in range(n) for k in range(n))
    return n * (
        pair / n**2
        - 2 * (1 + b**2) ** (-p / 2) * np.mean(np.exp(-(b**2) * d_j / (2 * (1 + b**2))))
        + (1 + 2 * b**2) ** (-p / 2)
    )


def skewed(n: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    x[:, 0] += 0.6 * x[:, -1] ** 2  # mildly non-normal, so the p-value is not ~1
    return x


@pytest.mark.parametrize("p", [2, 3])
def test_matches_pingouin(p):
    pingouin = pytest.importorskip("pingouin")
    x = skewed(60, p, seed=p)
    ref = pingouin.multivariate_normality(x, alpha=0.05)
    ours = henze_zirkler_test(torch.tensor(x))
    assert ours.statistic == pytest.approx(ref.hz, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pval, rel=1e-8)
    assert ours.normal == ref.normal
    assert (ours.n, ours.p) == (60, p) and ours.beta == pytest.approx(hz_beta(60, p))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_matches_numpy_transcription(p):
    x = skewed(25, p, seed=10 + p)
    assert float(henze_zirkler(torch.tensor(x))) == pytest.approx(numpy_hz(x), rel=1e-10)


def test_p_equals_one_works_and_tells_normal_from_uniform():
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(300, generator=g, dtype=D64)
    uniform = torch.rand(300, generator=g, dtype=D64)
    assert henze_zirkler(normal).shape == ()
    assert henze_zirkler_test(normal).pvalue > 0.05
    assert henze_zirkler_test(uniform).pvalue < 1e-3
    # (n,) and (n, 1) are the same data
    assert float(henze_zirkler(normal)) == float(henze_zirkler(normal[:, None]))


def test_affine_invariant():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, 2, generator=g, dtype=D64) ** 3
    a = torch.tensor([[2.0, 0.5], [-1.0, 3.0]], dtype=D64)
    moved = z @ a.T + torch.tensor([5.0, -7.0], dtype=D64)
    assert float(henze_zirkler(moved)) == pytest.approx(float(henze_zirkler(z)), rel=1e-9)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    for p in (1, 2):
        z = torch.randn(7, p, generator=g, dtype=D64).requires_grad_(True)
        assert torch.autograd.gradcheck(henze_zirkler, (z,), eps=1e-6, atol=1e-5)


def test_gradient_lowers_the_statistic():
    # a few gradient steps on skewed points make them look more normal (LiBI's use, Yacoby, Pan & Doshi-Velez (2020) Eq. 44)
    z = torch.tensor(skewed(100, 2, seed=7), requires_grad=True)
    start = float(henze_zirkler(z).detach())
    for _ in range(20):
        (grad,) = torch.autograd.grad(henze_zirkler(z), z)
        with torch.no_grad():
            z -= 0.5 * grad
    assert float(henze_zirkler(z).detach()) < 0.8 * start


def test_pvalue_is_a_decreasing_tail_probability():
    values = [henze_zirkler_pvalue(s, 100, 2) for s in (0.2, 0.8, 1.5, 3.0)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)


def test_singular_covariance_and_bad_input():
    z = torch.randn(10, 1, dtype=D64)
    assert float(henze_zirkler(torch.cat([z, 2 * z], 1))) == 40.0  # rank-deficient: 4n, as pingouin
    with pytest.raises(ConfigError, match="n >= 3"):
        henze_zirkler(torch.randn(2, 2))
    with pytest.raises(ConfigError, match="alpha"):
        henze_zirkler_test(torch.randn(10, 2), alpha=1.5)
    bad = torch.randn(10, 2)
    bad[3, 1] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        henze_zirkler(bad)


def test_a_batch_gives_each_sets_statistic_and_a_singular_set_leaves_the_others_gradients_alone():
    """(R, n, p): one statistic per set, equal to the set's own; a set on a line (singular covariance) gets
    4n with a zero gradient, and the other sets' gradients are their own, finite."""
    g = torch.Generator().manual_seed(3)
    sets = torch.randn(3, 20, 2, generator=g, dtype=D64) ** 3
    sets[1] = torch.linspace(0, 1, 20, dtype=D64)[:, None] * torch.tensor([1.0, 2.0], dtype=D64)  # a line
    batch = sets.clone().requires_grad_(True)
    stats = henze_zirkler(batch)
    assert stats.shape == (3,) and float(stats[1]) == 4.0 * 20
    stats.sum().backward()
    for r in (0, 2):
        alone = sets[r].clone().requires_grad_(True)
        own = henze_zirkler(alone)
        own.backward()
        assert float(stats[r]) == pytest.approx(float(own), rel=1e-12)
        assert torch.allclose(batch.grad[r], alone.grad, rtol=1e-10, atol=1e-12)
    assert torch.equal(batch.grad[1], torch.zeros_like(batch.grad[1]))
