r"""How much the latent code says about the data: KSG mutual information, the aggregate-posterior
MI of Lagging Inference Networks, KL per latent dimension and active units.

* :func:`ksg_mutual_information` — Kraskov, Stögbauer & Grassberger (2004), algorithm 1, with
  the max-norm in the joint space, :math:`k = 3`, each column standardised:

  .. math::
      \hat I(X; Z) = \psi(k) + \psi(N) - \big\langle \psi(n_x + 1) + \psi(n_z + 1) \big\rangle,

  where :math:`\epsilon_i` is the distance from point :math:`i` to its :math:`k`-th neighbour in the
  joint space and :math:`n_x(i)`, :math:`n_z(i)` count the other points strictly within
  :math:`\epsilon_i` in each marginal space. Yacoby, Pan & Doshi-Velez (2021, App. D; Table 1) reports
  :math:`I(x; z_i)` between the data and *each* latent dimension
  (:func:`latent_mutual_information`); ``sklearn``'s ``mutual_info_regression`` works column by
  column and cannot compute that for a vector :math:`x`.
* :func:`aggregate_posterior_mutual_information` — He et al. (2019)'s estimate
  :math:`I_q(x; z) = E_x[-H(q(z \mid x))] - E_{x}E_{q(z|x)}[\log q(z)]`, with
  :math:`q(z)` the batch's aggregate posterior :math:`\frac1B\sum_b q(z \mid x_b)` and one
  :math:`z` per point.
* :func:`kl_per_dimension` and :func:`active_units` — the analytic KL to :math:`N(0, I)` per
  dimension, and the units with :math:`\mathrm{Var}_x(E_{q}[z_j]) \ge 0.01`
  (Burda et al. 2016, Sec. 5.2; He et al. 2019).

References:
    Kraskov, Stögbauer & Grassberger, *Estimating mutual information*, Phys. Rev. E 69, 066138 (2004), Eq. 8.
    Yacoby, Pan & Doshi-Velez, *Failure Modes of VAEs* (Yacoby, Pan & Doshi-Velez 2021), App. D.
    He, Spokoyny, Neubig & Berg-Kirkpatrick, *Lagging Inference Networks and Posterior Collapse
    in VAEs*, ICLR 2019, Sec. 4-6 (and their public ``calc_mi``/``calc_au``).
    Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016, Sec. 5.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

from pyrovae.errors import ConfigError, DataError
from pyrovae.validation import integer_at_least

__all__ = [
    "ksg_mutual_information",
    "latent_mutual_information",
    "aggregate_posterior_mutual_information",
    "kl_per_dimension",
    "ActiveUnits",
    "active_units",
]

_LOG_2PI = math.log(2.0 * math.pi)


# -- KSG ---------------------------------------------------------------------------------
def _as_matrix(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ConfigError(f"{name} must be (n,) or (n, p), got shape {a.shape}")
    if np.isnan(a).any():
        raise DataError(f"{name} contains NaN")
    return a


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 0, sd, 1.0)


def ksg_mutual_information(x, z, k: int = 3, standardise: bool = True, jitter: float = 1e-10, seed: int = 0) -> float:
    r"""KSG estimate (algorithm 1, max-norm) of :math:`I(x; z)` in nats.

    Args:
        x: ``(n, p)`` or ``(n,)`` — a vector variable.
        z: ``(n,)`` (or ``(n, r)``) — typically one latent dimension.
        k: neighbours (default 3, as Kraskov et al. recommend and Yacoby, Pan & Doshi-Velez (2021) uses via their estimator).
        standardise: centre and scale every column to unit SD first (the max-norm mixes columns).
        jitter: relative noise added after standardising to break ties (0 to switch off), as
            ``sklearn`` does; drawn from ``seed``.

    Returns:
        The estimate (may be slightly negative when :math:`I \approx 0`).
    """
    k = integer_at_least("k", k)
    xa, za = _as_matrix(x, "x"), _as_matrix(z, "z")
    n = xa.shape[0]
    if za.shape[0] != n:
        raise ConfigError(f"x and z must have the same number of rows, got {n} and {za.shape[0]}")
    if n <= k:
        raise ConfigError(f"need more than k = {k} points, got {n}")
    if standardise:
        xa, za = _standardise(xa), _standardise(za)
    if jitter > 0:
        rng = np.random.default_rng(seed)
        xa = xa + jitter * np.maximum(1.0, np.abs(xa).mean(0)) * rng.standard_normal(xa.shape)
        za = za + jitter * np.maximum(1.0, np.abs(za).mean(0)) * rng.standard_normal(za.shape)
    joint = np.hstack([xa, za])
    # distance to the k-th neighbour in the joint max-norm (the point itself is returned first)
    eps = cKDTree(joint).query(joint, k=k + 1, p=np.inf)[0][:, -1]
    radius = np.nextafter(eps, 0)  # strictly closer than eps
    nx = cKDTree(xa).query_ball_point(xa, radius, p=np.inf, return_length=True) - 1
    nz = cKDTree(za).query_ball_point(za, radius, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(nz + 1)))


def latent_mutual_information(x, z, k: int = 3, standardise: bool = True, seed: int = 0) -> np.ndarray:
    r""":math:`I(x; z_j)` for every latent dimension ``j`` (Yacoby, Pan & Doshi-Velez 2021's "mutual information between
    :math:`x` and each dimension of the latent space"), by :func:`ksg_mutual_information`.

    ``z`` is ``(n, d)``: one latent per data point (e.g. a draw from :math:`q(z \mid x)`, or its
    mean — say which). Returns ``(d,)``.
    """
    za = _as_matrix(z, "z")
    return np.array([ksg_mutual_information(x, za[:, j], k, standardise, seed=seed) for j in range(za.shape[1])])


# -- Lagging Inference Networks' MI --------------------------------------------------------
def _check_loc_scale(loc: torch.Tensor, scale: torch.Tensor) -> None:
    if loc.dim() != 2 or loc.shape != scale.shape:
        raise ConfigError(f"loc and scale must both be (n, d), got {tuple(loc.shape)} and {tuple(scale.shape)}")
    if torch.isnan(loc).any() or torch.isnan(scale).any():
        raise DataError("loc or scale contains NaN")
    if (scale <= 0).any():
        raise DataError("scale must be positive")


def _mi_batch(loc: torch.Tensor, scale: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    b, d = loc.shape
    neg_entropy = (-0.5 * d * _LOG_2PI - 0.5 * (1.0 + 2.0 * scale.log()).sum(-1)).mean()
    z = loc + scale * torch.randn(loc.shape, generator=gen, dtype=loc.dtype, device=loc.device)
    r = (z[:, None, :] - loc[None, :, :]) / scale[None, :, :]  # (point of z, component)
    log_density = -0.5 * r.pow(2).sum(-1) - scale.log().sum(-1)[None, :] - 0.5 * d * _LOG_2PI
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(b)
    return neg_entropy - log_qz.mean()


def aggregate_posterior_mutual_information(
    loc: torch.Tensor, scale: torch.Tensor, batch_size: int | None = None, seed: int | None = 0
) -> torch.Tensor:
    r"""He et al. (2019)'s :math:`I_q(x; z)` from the encoder's Gaussians ``N(loc_b, scale_b^2)``.

    .. math::
        \hat I = -\frac d2\log 2\pi - \frac1B\sum_b \tfrac12\sum_j\big(1 + \log\sigma_{bj}^2\big)
               - \frac1B\sum_b \log \hat q(z_b),\qquad
        \hat q(z) = \frac1B\sum_{b'} N(z; \mu_{b'}, \sigma_{b'}^2),\ z_b \sim q(z \mid x_b).

    It is bounded by :math:`\log B`. With ``batch_size`` the points are split in consecutive
    batches and the per-batch values averaged weighted by batch size, as their evaluation on
    validation data does. Differentiable in ``loc`` and ``scale``.
    """
    loc, scale = torch.as_tensor(loc), torch.as_tensor(scale)
    _check_loc_scale(loc, scale)
    n = loc.shape[0]
    if batch_size is None:
        batch_size = n
    batch_size = integer_at_least("batch_size", batch_size)
    gen = None if seed is None else torch.Generator(device=loc.device).manual_seed(int(seed))
    total = loc.new_zeros(())
    for start in range(0, n, int(batch_size)):
        sl = slice(start, start + int(batch_size))
        total = total + _mi_batch(loc[sl], scale[sl], gen) * loc[sl].shape[0]
    return total / n


# -- KL per dimension, active units ----------------------------------------------------------
def kl_per_dimension(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""Mean over points of :math:`KL[N(\mu_j, \sigma_j^2) \| N(0, 1)] = \tfrac12(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)`, ``(d,)``.

    Its sum is the mean KL term of the ELBO; a collapsed dimension has value ≈ 0.
    """
    loc, scale = torch.as_tensor(loc), torch.as_tensor(scale)
    _check_loc_scale(loc, scale)
    return (0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - scale.log()).mean(0)


@dataclass(frozen=True)
class ActiveUnits:
    """``count`` active dimensions; ``mask`` ``(d,)`` bool; ``variance`` ``(d,)`` of the posterior means; ``threshold``."""

    count: int
    mask: torch.Tensor
    variance: torch.Tensor
    threshold: float


def active_units(loc: torch.Tensor, threshold: float = 0.01) -> ActiveUnits:
    r"""Active units: dimension :math:`j` is active if :math:`\mathrm{Var}_x(E_{q(z|x)}[z_j]) \ge` ``threshold``.

    ``loc`` ``(n, d)`` are the encoder means :math:`E_q[z \mid x_n]`; the variance is the
    unbiased sample variance over points, as He et al.'s ``calc_au``; threshold 0.01
    (Burda et al. 2016).
    """
    loc = torch.as_tensor(loc)
    if loc.dim() != 2:
        raise ConfigError(f"loc must be (n, d), got shape {tuple(loc.shape)}")
    if loc.shape[0] < 2:
        raise ConfigError("active units need at least 2 points")
    if torch.isnan(loc).any():
        raise DataError("loc contains NaN")
    threshold = float(threshold)
    if not threshold >= 0:
        raise ConfigError(f"threshold must be non-negative, got {threshold}")
    variance = loc.detach().var(0, unbiased=True)
    mask = variance >= threshold
    return ActiveUnits(count=int(mask.sum()), mask=mask, variance=variance, threshold=threshold)
