"""The smooth kNN statistic (Djolonga & Krause 2017, k = 1) against a hand transcription, and its behaviour;
the unbiased MMD² (Gretton et al. 2012, Eq. 3) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics import SmoothKNNResult, mmd2_unbiased, smooth_knn_repeated, smooth_knn_statistic

D64 = torch.float64


def hand_statistic(s1: list[float], s2: list[float], alpha: float) -> float:
    """The REFERENCE_NOTES formula written out with plain Python loops, 1-D points."""
    pts = s1 + s2
    n1, n2, n = len(s1), len(s2), len(s1) + len(s2)
    d = [[math.sqrt((a - b) ** 2 + 1e-5) for b in pts] for a in pts]
    P = [[0.0] * n for _ in range(n)]
    for i in range(n):
        z = sum(math.exp(-alpha * d[i][k]) for k in range(n) if k != i)
        for j in range(n):
            if j != i:
                P[i][j] = math.exp(-alpha * d[i][j]) / z
    first = set(range(n1))
    T = sum(P[i][j] for i in range(n) for j in range(n) if (i in first) != (j in first))
    m = sum(map(sum, P))
    r = [sum(P[i]) for i in range(n)]
    c = [sum(P[j][i] for j in range(n)) for i in range(n)]
    mu = 2 * m * n1 * n2 / (n * (n - 1))
    chi1 = n1 * n2 / (n * (n - 1))
    chi2 = 4 * (n1 - 1) * (n2 - 1) / ((n - 2) * (n - 3))
    var = (
        chi1 * (1 - chi2) * sum((r[i] + c[i]) ** 2 for i in range(n))
        + chi1 * chi2 * sum(P[i][j] ** 2 for i in range(n) for j in range(n))
        + chi1 * chi2 * sum(P[i][j] * P[j][i] for i in range(n) for j in range(n))
        + chi1 * (chi2 - 4 * chi1) * m**2
    )
    return -(T - mu) / math.sqrt(var + 1e-5)


def test_tiny_case_matches_hand_computation():
    # n1 = n2 = 2 in 1-D: every row of P is a softmax over the 3 other points
    s1, s2 = [0.0, 1.0], [3.0, 5.0]
    res = smooth_knn_statistic(torch.tensor(s1, dtype=D64), torch.tensor(s2, dtype=D64), alpha=0.7)
    assert isinstance(res, SmoothKNNResult) and (res.n1, res.n2, res.alpha) == (2, 2, 0.7)
    assert float(res.value) == pytest.approx(hand_statistic(s1, s2, 0.7), abs=1e-6)
    # the first row of P by hand: point 0 sees 1, 3, 5 at distances ~1, ~3, ~5
    w = [math.exp(-0.7 * math.sqrt(d * d + 1e-5)) for d in (1.0, 3.0, 5.0)]
    p01 = w[0] / sum(w)
    assert 0.5 < p01 < 1.0  # most of point 0's mass is on its own sample: the samples differ
    # and a case with n1 != n2 in 2-D, against the same transcription on one axis
    a, b = [0.2, -1.0, 0.4], [0.1, 2.0, 2.5, -0.3]
    got = smooth_knn_statistic(torch.tensor(a, dtype=D64)[:, None], torch.tensor(b, dtype=D64)[:, None], alpha=2.0)
    assert float(got.value) == pytest.approx(hand_statistic(a, b, 2.0), abs=1e-6)


def test_same_distribution_gives_small_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 2, generator=g, dtype=D64)
    b = torch.randn(2000, 2, generator=g, dtype=D64)
    single = smooth_knn_statistic(a[:100], b[:100])
    assert abs(float(single.value)) < 3.0
    res = smooth_knn_repeated(a, b, n=100, repeats=100, alpha=1.0, seed=1)
    assert (res.n1, res.n2, res.alpha, res.repeats) == (100, 100, 1.0, 100)
    assert abs(float(res.value)) < 0.5  # a null t-statistic: mean ~ 0, sd ~ 1
    assert 0.5 < res.std < 1.6


def test_a_duplicated_sample_is_closer_than_chance():
    # the same points on both sides: every point's nearest neighbour is its copy across the
    # samples, so the cross-sample mass exceeds its null mean and the statistic is negative
    a = torch.randn(50, 2, generator=torch.Generator().manual_seed(5), dtype=D64)
    assert float(smooth_knn_statistic(a, a.clone(), alpha=1.0).value) < -2.0
    assert float(smooth_knn_statistic(a, a.clone(), alpha=50.0).value) < float(smooth_knn_statistic(a, a.clone()).value)


def test_clear_shift_gives_large_value():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(100, 2, generator=g, dtype=D64)
    b = torch.randn(100, 2, generator=g, dtype=D64) + torch.tensor([2.0, 0.0], dtype=D64)
    assert float(smooth_knn_statistic(a, b).value) > 10.0
    # and it grows with the shift
    values = [float(smooth_knn_statistic(a, b - torch.tensor([s, 0.0], dtype=D64)).value) for s in (1.5, 1.0, 0.0)]
    assert values[0] < values[1] < values[2]


def test_invariant_to_permutations_and_symmetric():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(30, 3, generator=g, dtype=D64)
    b = torch.randn(25, 3, generator=g, dtype=D64) * 1.5
    v = smooth_knn_statistic(a, b, alpha=3.0).value
    pa, pb = torch.randperm(30, generator=g), torch.randperm(25, generator=g)
    assert abs(float(smooth_knn_statistic(a[pa], b[pb], alpha=3.0).value - v)) < 1e-10
    assert abs(float(smooth_knn_statistic(b, a, alpha=3.0).value - v)) < 1e-10


def test_batched_equals_one_by_one_and_gradients_flow():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 10, 2, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(4, 12, 2, generator=g, dtype=D64)
    batched = smooth_knn_statistic(a, b).value
    assert batched.shape == (4,)
    for i in range(4):
        assert abs(float((batched[i] - smooth_knn_statistic(a[i], b[i]).value).detach())) < 1e-12
    batched.sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_bad_arguments():
    a = torch.randn(5, 2)
    with pytest.raises(ConfigError, match="alpha"):
        smooth_knn_statistic(a, a, alpha=0.0)
    with pytest.raises(ConfigError, match="dimension"):
        smooth_knn_statistic(a, torch.randn(5, 3))
    with pytest.raises(ConfigError, match="n1 \\+ n2 >= 4"):
        smooth_knn_statistic(a[:1], a[:2])
    with pytest.raises(ConfigError, match="cannot draw"):
        smooth_knn_repeated(a, a, n=10)
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        smooth_knn_statistic(bad, a)


def test_mmd_hand_computed():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [2.0]])
    # h = 1: k(a, b) = exp(-(a - b)^2 / 2)
    kxx = math.exp(-0.5)  # one off-diagonal pair, counted twice and divided by m(m-1) = 2
    kyy = math.exp(-2.0)
    kxy = (1.0 + math.exp(-2.0) + math.exp(-0.5) + math.exp(-0.5)) / 4.0
    assert float(mmd2_unbiased(x, y, bandwidth=1.0)) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-12)
    # 2-D, bandwidth 2, unequal sizes
    x2 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y2 = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])

    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / 8.0)

    xs, ys = x2.tolist(), y2.tolist()
    want = (
        sum(k(a, b) for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j) / 2
        + sum(k(a, b) for i, a in enumerate(ys) for j, b in enumerate(ys) if i != j) / 6
        - 2 * sum(k(a, b) for a in xs for b in ys) / 6
    )
    assert float(mmd2_unbiased(x2, y2, bandwidth=2.0)) == pytest.approx(want, abs=1e-12)


def test_mmd_is_unbiased_near_zero_and_detects_a_shift():
    gen = torch.Generator().manual_seed(0)
    same = [float(mmd2_unbiased(torch.randn(50, 2, generator=gen), torch.randn(50, 2, generator=gen), 1.0)) for _ in range(40)]
    assert abs(sum(same) / len(same)) < 0.01
    shifted = float(mmd2_unbiased(torch.randn(200, 2, generator=gen), torch.randn(200, 2, generator=gen) + 1.0, 1.0))
    assert shifted > 0.1
    with pytest.raises(DataError):
        mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ConfigError):
        mmd2_unbiased(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=0.0)
