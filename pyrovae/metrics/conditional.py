r"""Conditional moments of :math:`y \mid x` from samples, and their errors against the truth.

Liu & Wang (2025, Sec. 5.2, App. F) judges a conditional generator by the mean squared error of its
conditional mean and conditional standard deviation over :math:`k` test inputs:

.. math::
    \mathrm{MSE}_{\text{mean}} = \frac1k\sum_{i=1}^k\big(\hat E[y \mid x_i] - E[y \mid x_i]\big)^2,\qquad
    \mathrm{MSE}_{\text{SD}} = \frac1k\sum_{i=1}^k\big(\widehat{SD}[y \mid x_i] - SD[y \mid x_i]\big)^2,

with :math:`\hat E` and :math:`\widehat{SD}` estimated from draws of the model (500 per test
point for their method). For a multivariate response the squared errors are also averaged over
the response columns.

References:
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration* (Liu & Wang 2025), Sec. 5.2, App. F.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyrovae.errors import ConfigError, DataError

__all__ = ["ConditionalMoments", "MomentErrors", "conditional_moments", "moment_errors"]


@dataclass(frozen=True)
class ConditionalMoments:
    r"""``mean`` and ``sd`` of :math:`y \mid x_i`, each ``(n, q)``, from ``num_samples`` draws per point."""

    mean: np.ndarray
    sd: np.ndarray
    num_samples: int


@dataclass(frozen=True)
class MomentErrors:
    """``mse_mean`` and ``mse_sd`` (Liu & Wang 2025 App. F) over ``num_points`` test points."""

    mse_mean: float
    mse_sd: float
    num_points: int

    def as_dict(self) -> dict:
        return {"mse_mean": self.mse_mean, "mse_sd": self.mse_sd, "num_points": self.num_points}


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if np.isnan(a).any():
        raise DataError(f"{name} contains NaN")
    return a


def conditional_moments(samples, ddof: int = 1) -> ConditionalMoments:
    r"""Per-point mean and SD of draws ``samples`` of shape ``(S, n, q)`` (or ``(S, n)`` for ``q = 1``).

    ``ddof = 1`` (default) gives the usual sample SD :math:`\sqrt{\frac{1}{S-1}\sum_s (y_s - \bar y)^2}`;
    ``ddof = 0`` the plug-in one.
    """
    s = _as_array(samples, "samples")
    if s.ndim == 2:
        s = s[..., None]
    if s.ndim != 3:
        raise ConfigError(f"samples must be (S, n, q) or (S, n), got shape {s.shape}")
    if ddof not in (0, 1):
        raise ConfigError(f"ddof must be 0 or 1, got {ddof!r}")
    if s.shape[0] <= ddof:
        raise ConfigError(f"need more than {ddof} draws per point, got {s.shape[0]}")
    return ConditionalMoments(mean=s.mean(0), sd=s.std(0, ddof=ddof), num_samples=int(s.shape[0]))


def moment_errors(estimate, true_mean, true_sd, ddof: int = 1) -> MomentErrors:
    r"""MSE of the conditional mean and SD against the truth (Liu & Wang 2025 App. F).

    Args:
        estimate: draws ``(S, n, q)`` / ``(S, n)``, or a :class:`ConditionalMoments`.
        true_mean, true_sd: :math:`E[y \mid x_i]`, :math:`SD[y \mid x_i]`, ``(n, q)`` or ``(n,)``.
        ddof: for the SD of draws (see :func:`conditional_moments`).
    """
    moments = estimate if isinstance(estimate, ConditionalMoments) else conditional_moments(estimate, ddof)
    tm, ts = _as_array(true_mean, "true_mean"), _as_array(true_sd, "true_sd")
    if tm.ndim == 1:
        tm = tm[:, None]
    if ts.ndim == 1:
        ts = ts[:, None]
    if tm.shape != moments.mean.shape or ts.shape != moments.sd.shape:
        raise ConfigError(
            f"true moments of shapes {tm.shape} and {ts.shape} do not match the estimates' {moments.mean.shape}"
        )
    return MomentErrors(
        mse_mean=float(np.mean((moments.mean - tm) ** 2)),
        mse_sd=float(np.mean((moments.sd - ts) ** 2)),
        num_points=int(tm.shape[0]),
    )
