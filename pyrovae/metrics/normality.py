r"""The Henze-Zirkler statistic for multivariate normality, differentiable, and its p-value.

For :math:`n` points in :math:`\mathbb{R}^p` with mean :math:`\bar z` and *biased* covariance
:math:`S = \frac1n\sum_j (z_j-\bar z)(z_j-\bar z)^\top`, let
:math:`D_{jk} = (z_j - z_k)^\top S^{-1}(z_j - z_k)` and :math:`D_j = (z_j-\bar z)^\top S^{-1}(z_j-\bar z)`,
and :math:`\beta = \frac{1}{\sqrt2}\big(\frac{2p+1}{4}\big)^{1/(p+4)} n^{1/(p+4)}`. Then

.. math::
    HZ = n\Big[\frac{1}{n^2}\sum_{j,k} e^{-\beta^2 D_{jk}/2}
        - 2(1+\beta^2)^{-p/2}\frac1n\sum_j e^{-\beta^2 D_j/(2(1+\beta^2))}
        + (1+2\beta^2)^{-p/2}\Big].

Small values are consistent with normality. Yacoby, Pan & Doshi-Velez (2020, Eq. 43-44) penalises
:math:`\epsilon_{HZ}\exp(HZ(\{h(x_n)\}))` in LiBI, hence the torch version here: it is
differentiable in the points (through the covariance as well), for any :math:`p \ge 1`.
The p-value uses Henze & Zirkler's log-normal approximation to the null distribution, as
``pingouin.multivariate_normality`` (and the R package MVN) do.

References:
    Henze & Zirkler, *A class of invariant consistent tests for multivariate normality*,
    Comm. Statist. Theory Methods 19(10), 1990.
    Yacoby, Pan & Doshi-Velez (2020), Eq. 43-44.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pyrovae.errors import ConfigError, DataError

__all__ = ["HZResult", "hz_beta", "henze_zirkler", "henze_zirkler_pvalue", "henze_zirkler_test"]


@dataclass(frozen=True)
class HZResult:
    """Henze-Zirkler test: ``statistic``, ``pvalue``, ``normal`` (``pvalue > alpha``), ``n``, ``p``, ``beta``."""

    statistic: float
    pvalue: float
    normal: bool
    n: int
    p: int
    beta: float


def hz_beta(n: int, p: int) -> float:
    r"""The smoothing parameter :math:`\beta = \frac{1}{\sqrt2}((2p+1)/4)^{1/(p+4)} n^{1/(p+4)}`."""
    return (1.0 / math.sqrt(2.0)) * ((2 * p + 1) / 4.0) ** (1.0 / (p + 4)) * n ** (1.0 / (p + 4))


def _as_points(z, batched: bool = False) -> torch.Tensor:
    """``z`` as floating ``(n, p)`` points (``(n,)`` is ``p = 1``); with ``batched``, ``(..., n, p)``."""
    z = torch.as_tensor(z)
    if not z.is_floating_point():
        z = z.double()
    if z.dim() == 1:
        z = z[:, None]
    if z.dim() != 2 and not (batched and z.dim() > 2):
        raise ConfigError(f"points must be (n, p) or (n,), got shape {tuple(z.shape)}")
    if z.shape[-2] < 3 or z.shape[-1] < 1:
        raise ConfigError(f"the Henze-Zirkler statistic needs n >= 3 points and p >= 1 columns, got {tuple(z.shape)}")
    if torch.isnan(z).any():
        raise DataError("points contain NaN")
    return z


def henze_zirkler(z: torch.Tensor) -> torch.Tensor:
    r"""The Henze-Zirkler statistic of the rows of ``z`` (``(n, p)``, or ``(n,)`` for ``p = 1``), or of
    each set of points of a batch ``(..., n, p)`` (one statistic per leading index).

    Differentiable (a tensor of shape ``z.shape[:-2]`` in ``z``'s dtype). A set whose biased covariance
    is singular gets the constant ``4n``, as ``pingouin`` does, with no gradient (nor a NaN one for
    the others of its batch).
    """
    z = _as_points(z, batched=True)
    n, p = z.shape[-2:]
    centred = z - z.mean(-2, keepdim=True)
    cov = centred.mT @ centred / n
    singular = torch.linalg.cholesky_ex(cov.detach())[1] != 0
    # factor the identity where the covariance is singular, so that no value or gradient turns NaN
    chol = torch.linalg.cholesky(torch.where(singular[..., None, None], torch.eye(p, dtype=z.dtype, device=z.device), cov))
    w = torch.linalg.solve_triangular(chol, centred.mT, upper=False).mT  # whitened: D_j = |w_j|^2
    d_j = w.pow(2).sum(-1)
    d_jk = (d_j[..., :, None] + d_j[..., None, :] - 2.0 * (w @ w.mT)).clamp_min(0.0)
    b2 = hz_beta(n, p) ** 2
    term1 = torch.exp(-0.5 * b2 * d_jk).sum((-2, -1)) / n**2
    term2 = 2.0 * (1.0 + b2) ** (-p / 2) * torch.exp(-b2 * d_j / (2.0 * (1.0 + b2))).mean(-1)
    term3 = (1.0 + 2.0 * b2) ** (-p / 2)
    statistic = n * (term1 - term2 + term3)
    return torch.where(singular, torch.full_like(statistic, 4.0 * n), statistic)


def henze_zirkler_pvalue(statistic: float, n: int, p: int) -> float:
    r"""Upper-tail p-value of ``statistic`` under the log-normal null approximation.

    With :math:`a = 1 + 2\beta^2` and :math:`w_b = (1+\beta^2)(1+3\beta^2)`, the null mean and
    variance of HZ are

    .. math::
        \mu = 1 - a^{-p/2}\Big(1 + \frac{p\beta^2}{a} + \frac{p(p+2)\beta^4}{2a^2}\Big),\qquad
        \sigma^2 = 2(1+4\beta^2)^{-p/2} + 2a^{-p}\Big(1 + \frac{2p\beta^4}{a^2} + \frac{3p(p+2)\beta^8}{4a^4}\Big)
                 - 4 w_b^{-p/2}\Big(1 + \frac{3p\beta^4}{2w_b} + \frac{p(p+2)\beta^8}{2 w_b^2}\Big),

    and HZ is taken log-normal with those moments.
    """
    from scipy.stats import lognorm  # imported here: scipy.stats is slow to import

    n, p = int(n), int(p)
    if n < 3 or p < 1:
        raise ConfigError(f"need n >= 3 and p >= 1, got n = {n}, p = {p}")
    b = hz_beta(n, p)
    b2, b4, b8 = b**2, b**4, b**8
    a = 1.0 + 2.0 * b2
    wb = (1.0 + b2) * (1.0 + 3.0 * b2)
    mu = 1.0 - a ** (-p / 2) * (1.0 + p * b2 / a + p * (p + 2) * b4 / (2.0 * a**2))
    si2 = (
        2.0 * (1.0 + 4.0 * b2) ** (-p / 2)
        + 2.0 * a ** (-p) * (1.0 + 2.0 * p * b4 / a**2 + 3.0 * p * (p + 2) * b8 / (4.0 * a**4))
        - 4.0 * wb ** (-p / 2) * (1.0 + 3.0 * p * b4 / (2.0 * wb) + p * (p + 2) * b8 / (2.0 * wb**2))
    )
    log_mu = np.log(np.sqrt(mu**4 / (si2 + mu**2)))
    log_sd = np.sqrt(np.log1p(si2 / mu**2))
    return float(lognorm.sf(float(statistic), log_sd, scale=np.exp(log_mu)))


def henze_zirkler_test(z: torch.Tensor, alpha: float = 0.05) -> HZResult:
    """Statistic, p-value and the verdict ``pvalue > alpha`` for the rows of ``z``."""
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    z = _as_points(z)
    n, p = z.shape
    with torch.no_grad():
        stat = float(henze_zirkler(z))
    pval = henze_zirkler_pvalue(stat, n, p)
    return HZResult(statistic=stat, pvalue=pval, normal=pval > alpha, n=n, p=p, beta=hz_beta(n, p))
