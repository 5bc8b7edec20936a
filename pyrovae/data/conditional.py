"""Conditional data sets of Liu & Wang (2025, Doubly Robust Conditional VAE)."""

from __future__ import annotations

import math

import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError

__all__ = ["two_moon"]


def two_moon(n: int = 5000, tau: float = 0.1, seed: int = 0) -> Dataset:
    r"""Two interleaved half circles, one per class, exactly as Section 5.1 of Liu & Wang (2025).

    With :math:`\alpha \sim U[0, \pi]` and :math:`\epsilon_i \sim N(0, \tau^2)`,

    .. math::
        y = (\cos\alpha + \tfrac12 + \epsilon_1,\ \sin\alpha - \tfrac16 + \epsilon_2) \text{ if } x = -1,
        \qquad
        y = (\cos\alpha - \tfrac12 + \epsilon_3,\ -\sin\alpha + \tfrac16 + \epsilon_4) \text{ if } x = 1.

    The first ``n // 2`` points have ``x = -1`` and the rest ``x = 1`` (half per class
    for even ``n``). The truth records ``sigma = tau`` (the decoder scale to recover)
    and the latent angles ``alpha``.

    References:
        Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration*, Sec. 5.1.
    """
    if int(n) != n or n < 2:
        raise ConfigError(f"two-moon needs n >= 2 points, got {n}")
    if not math.isfinite(tau) or tau < 0:
        raise ConfigError(f"two-moon needs a noise level tau >= 0, got {tau}")
    n = int(n)
    g = torch.Generator().manual_seed(int(seed))
    condition = torch.ones(n)
    condition[: n // 2] = -1.0
    alpha = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64) * tau
    upper = condition < 0
    y1 = torch.cos(alpha) + torch.where(upper, 0.5, -0.5)
    y2 = torch.where(upper, torch.sin(alpha) - 1 / 6, -torch.sin(alpha) + 1 / 6)
    observed = torch.stack([y1, y2], dim=1) + eps
    return Dataset(
        name="two-moon",
        condition=condition.unsqueeze(1),
        observed=observed.to(torch.get_default_dtype()),
        truth={"sigma": float(tau), "alpha": alpha.to(torch.get_default_dtype())},
        params={"n": n, "tau": float(tau), "seed": int(seed)},
    )
