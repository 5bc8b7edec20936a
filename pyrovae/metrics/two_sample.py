r"""Two-sample statistics: the smooth k-nearest-neighbour statistic (k = 1) and MMD.

**Smooth kNN** (Djolonga & Krause 2017, k = 1, as their ``torch-two-sample`` computes it).
Pool the samples :math:`S_1` (:math:`n_1` points) and :math:`S_2` (:math:`n_2`), :math:`n = n_1 + n_2`;
distances :math:`d_{ij} = \sqrt{\|s_i - s_j\|^2 + 10^{-5}}`; soft nearest-neighbour weights
:math:`P_{ij} = \mathrm{softmax}_{j \ne i}(-\alpha d_{ij})`, :math:`P_{ii} = 0`. The
cross-sample mass is :math:`T = \sum_{i \in S_1, j \in S_2} P_{ij} + \sum_{i \in S_2, j \in S_1} P_{ij}`.
Under the permutation null, with :math:`m = \sum_{ij} P_{ij}`, :math:`r_i = \sum_j P_{ij}`,
:math:`c_i = \sum_j P_{ji}`, :math:`\chi_1 = n_1 n_2 / (n(n-1))`,
:math:`\chi_2 = 4(n_1 - 1)(n_2 - 1)/((n-2)(n-3))`:

.. math::
    \mu = \frac{2 m n_1 n_2}{n(n-1)}, \qquad
    \sigma^2 = \chi_1(1-\chi_2)\sum_i (r_i + c_i)^2 + \chi_1\chi_2 \sum_{ij} P_{ij}^2
             + \chi_1\chi_2 \sum_{ij} P_{ij}P_{ji} + \chi_1(\chi_2 - 4\chi_1)\, m^2,

and the reported value is :math:`-(T - \mu)/\sqrt{\sigma^2 + 10^{-5}}`: near 0 (roughly
standard normal) when both samples come from one distribution, large and positive when they
differ (few cross-sample nearest neighbours), and negative when the samples are closer than
chance (a sample against a copy of itself: every nearest neighbour crosses). both papers of Yacoby, Pan & Doshi-Velez (2021, 2020) report it for model samples
against data samples, "lower is better"; Yacoby, Pan & Doshi-Velez (2020) draws 100 points from each side and
averages over repetitions (:func:`smooth_knn_repeated`). The value depends on the sample
sizes and on the inverse temperature :math:`\alpha`, so both are returned with it.

**MMD**: the unbiased squared MMD with a Gaussian kernel (:func:`mmd2_unbiased`), bandwidth by the
median heuristic unless given.

References:
    Djolonga & Krause, *Learning Implicit Generative Models Using Differentiable Graph Tests*,
    arXiv:1709.01006, 2017, Sec. 3-4.
    Yacoby, Pan & Doshi-Velez (2021, App. D "Evaluation Metrics"; Yacoby, Pan & Doshi-Velez (2020), App. E).
    Gretton et al., *A Kernel Two-Sample Test*, JMLR 2012, Eq. 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.validation import integer_at_least

__all__ = ["SmoothKNNResult", "smooth_knn_statistic", "smooth_knn_repeated", "median_bandwidth", "mmd2_unbiased"]

_EPS = 1e-5  # inside the square roots of the distances and of the variance, as torch-two-sample


@dataclass(frozen=True)
class SmoothKNNResult:
    """The smooth kNN statistic with the settings it depends on.

    Attributes:
        value: the statistic, a tensor (differentiable in the samples; batched inputs give
            one value per batch entry; :func:`smooth_knn_repeated` gives the mean).
        n1, n2: the sample sizes each statistic was computed on.
        alpha: the inverse temperature.
        repeats: how many statistics were averaged (1 for a single computation).
        std: their standard deviation over repeats (``None`` for one).
    """

    value: torch.Tensor
    n1: int
    n2: int
    alpha: float
    repeats: int = 1
    std: float | None = None

    def __float__(self) -> float:
        return float(self.value.mean())


def _as_samples(a, name: str) -> torch.Tensor:
    a = torch.as_tensor(a)
    if not a.is_floating_point():
        a = a.double()
    if a.dim() == 1:
        a = a[:, None]
    if a.dim() < 2:
        raise ConfigError(f"{name} must be (n, d) or (batch, n, d), got shape {tuple(a.shape)}")
    if torch.isnan(a).any():
        raise DataError(f"{name} contains NaN")
    return a


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"alpha (the inverse temperature) must be positive, got {alpha}")
    return alpha


def smooth_knn_statistic(sample_1: torch.Tensor, sample_2: torch.Tensor, alpha: float = 1.0) -> SmoothKNNResult:
    r"""Smooth 1-NN two-sample statistic :math:`-(T-\mu)/\sqrt{\sigma^2 + 10^{-5}}` (module docstring).

    Args:
        sample_1: ``(n1, d)`` (or ``(n1,)`` for 1-D, or ``(batch, n1, d)`` for several
            independent statistics at once).
        sample_2: ``(n2, d)`` (same leading batch shape as ``sample_1``).
        alpha: inverse temperature of the soft nearest neighbour (large: hard 1-NN). The
            papers do not state theirs; 1.0 is this library's default. Report it.

    Returns:
        :class:`SmoothKNNResult`; ``value`` is differentiable in both samples.
    """
    alpha = _check_alpha(alpha)
    s1, s2 = _as_samples(sample_1, "sample_1"), _as_samples(sample_2, "sample_2")
    if s1.shape[:-2] != s2.shape[:-2] or s1.shape[-1] != s2.shape[-1]:
        raise ConfigError(f"samples must share batch shape and dimension, got {tuple(s1.shape)} and {tuple(s2.shape)}")
    dtype = torch.promote_types(s1.dtype, s2.dtype)
    s1, s2 = s1.to(dtype), s2.to(dtype)
    n1, n2 = s1.shape[-2], s2.shape[-2]
    n = n1 + n2
    if n1 < 1 or n2 < 1 or n < 4:
        raise ConfigError(f"the smooth kNN statistic needs n1, n2 >= 1 and n1 + n2 >= 4, got {n1} and {n2}")
    pooled = torch.cat([s1, s2], dim=-2)
    sq_norm = pooled.pow(2).sum(-1)
    sq_dist = (sq_norm.unsqueeze(-1) + sq_norm.unsqueeze(-2) - 2.0 * pooled @ pooled.transpose(-1, -2)).clamp_min(0.0)
    dist = torch.sqrt(sq_dist + _EPS)
    eye = torch.eye(n, dtype=torch.bool, device=pooled.device)
    logits = (-alpha * dist).masked_fill(eye, -math.inf)
    p = torch.softmax(logits, dim=-1)  # P_ii = exp(-inf) = 0
    t = p[..., :n1, n1:].sum((-2, -1)) + p[..., n1:, :n1].sum((-2, -1))
    m = p.sum((-2, -1))
    mean = 2.0 * m * n1 * n2 / (n * (n - 1))
    chi_1 = n1 * n2 / (n * (n - 1))
    chi_2 = 4.0 * (n1 - 1) * (n2 - 1) / ((n - 2) * (n - 3))
    node = (p.sum(-1) + p.sum(-2)).pow(2).sum(-1)
    var = (
        chi_1 * (1.0 - chi_2) * node
        + chi_1 * chi_2 * p.pow(2).sum((-2, -1))
        + chi_1 * chi_2 * (p * p.transpose(-1, -2)).sum((-2, -1))
        + chi_1 * (chi_2 - 4.0 * chi_1) * m.pow(2)
    )
    value = -(t - mean) / torch.sqrt(var + _EPS)
    return SmoothKNNResult(value=value, n1=n1, n2=n2, alpha=alpha)


def smooth_knn_repeated(
    sample_1: torch.Tensor,
    sample_2: torch.Tensor,
    n: int = 100,
    repeats: int = 100,
    alpha: float = 1.0,
    seed: int = 0,
    batch: int = 50,
) -> SmoothKNNResult:
    r"""Average of :func:`smooth_knn_statistic` over random subsamples of ``n`` points from each side.

    Yacoby, Pan & Doshi-Velez (2020, App. E) compares 100 points from :math:`p(x)` with 100 from :math:`p_\theta(x)`
    and averages over 20000 repetitions; here each repetition draws ``n`` rows without
    replacement from each given sample (so ``n`` must not exceed either size). Computed
    ``batch`` repetitions at a time.

    Returns:
        :class:`SmoothKNNResult` with the mean ``value`` (0-dim tensor), ``repeats`` and ``std``.
    """
    alpha = _check_alpha(alpha)
    s1, s2 = _as_samples(sample_1, "sample_1"), _as_samples(sample_2, "sample_2")
    if s1.dim() != 2 or s2.dim() != 2 or s1.shape[1] != s2.shape[1]:
        raise ConfigError(f"samples must be (n1, d) and (n2, d), got {tuple(s1.shape)} and {tuple(s2.shape)}")
    n = integer_at_least("n", n)
    repeats = integer_at_least("repeats", repeats)
    batch = integer_at_least("batch", batch)
    if n > s1.shape[0] or n > s2.shape[0]:
        raise ConfigError(f"cannot draw n = {n} points from samples of {s1.shape[0]} and {s2.shape[0]}")
    gen = torch.Generator().manual_seed(int(seed))
    values = []
    with torch.no_grad():
        for start in range(0, repeats, batch):
            b = min(batch, repeats - start)
            i1 = torch.rand(b, s1.shape[0], generator=gen).argsort(-1)[:, :n].to(s1.device)
            i2 = torch.rand(b, s2.shape[0], generator=gen).argsort(-1)[:, :n].to(s2.device)
            values.append(smooth_knn_statistic(s1[i1], s2[i2], alpha).value)
    v = torch.cat(values)
    std = float(v.std()) if repeats > 1 else None
    return SmoothKNNResult(value=v.mean(), n1=n, n2=n, alpha=alpha, repeats=repeats, std=std)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """The median heuristic: the median pairwise distance of the pooled sample."""
    pooled = torch.cat([x, y]).double()
    dist = torch.cdist(pooled, pooled)
    off = dist[~torch.eye(pooled.shape[0], dtype=torch.bool, device=pooled.device)]
    return float(off.median().clamp_min(1e-12))


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    r"""Unbiased :math:`\widehat{MMD}^2_u` with :math:`k(a, b) = \exp(-\|a - b\|^2 / (2 h^2))`.

    .. math::
        \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{mn}\sum_{i, j} k(x_i, y_j)

    (Gretton et al. 2012, Eq. 3). ``bandwidth`` ``h`` defaults to :func:`median_bandwidth`.
    It can be negative when the distributions agree.
    """
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"need two samples of at least 2 rows with the same columns, got {tuple(x.shape)} and {tuple(y.shape)}")
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ConfigError(f"bandwidth must be positive, got {h}")

    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2.0 * h * h))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2.0 * kxy.mean()
