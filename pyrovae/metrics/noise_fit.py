r"""The observation-noise variance that maximises the ELBO with the encoder's q.

For fixed encoder and decoder, the ELBO of a Gaussian decoder :math:`N(f_\theta(z), \mathrm{diag}(\sigma_d^2))`
is maximised by (Yacoby, Pan & Doshi-Velez 2021, Eq. 9 and App. C.2, Eq. 30-31)

.. math::
    \sigma_d^2 = \frac1N \sum_{n=1}^N \mathbb{E}_{q_\phi(z \mid x_n)}\big[(x_n^{(d)} - f_\theta(z)^{(d)})^2\big],

and by its average over :math:`d` when one σ is shared by all dimensions (the analytic σ of Liu & Wang (2025),
Eq. 10). :func:`elbo_optimal_noise_variance` estimates the expectation with ``draws`` reparameterised
samples per point. The fits per point with the model fixed (the best mean-field q of each point, the closest
point of the learned manifold and guideline 4's residual check) are in :mod:`pyrovae.posterior.point_fits`.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 8 (Eq. 9), Sec. 9 (guideline 4), App. C.2.
"""

from __future__ import annotations

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.validation import integer_at_least

__all__ = ["check_model_data", "elbo_optimal_noise_variance"]


def check_model_data(model, condition: torch.Tensor, observed: torch.Tensor) -> None:
    """``x`` (n, p) and ``y`` (n, q) with one n, as wide as ``model``'s input and response: else a
    :class:`~pyrovae.errors.DataError` (shapes) or :class:`~pyrovae.errors.ConfigError` (widths)."""
    if observed.dim() != 2 or condition.dim() != 2 or condition.shape[0] != observed.shape[0]:
        raise DataError(f"need the condition (n, p) and the observed data (n, q) with the same n, got {tuple(condition.shape)} and {tuple(observed.shape)}")
    if observed.shape[1] != model.observed_dim or condition.shape[1] != model.condition_dim:
        raise ConfigError(f"model expects {model.condition_dim} input and {model.observed_dim} response columns; got {condition.shape[1]} and {observed.shape[1]}")


@torch.no_grad()
def elbo_optimal_noise_variance(model, condition: torch.Tensor, observed: torch.Tensor, draws: int = 100, per_dimension: bool = False,
                                seed: int | None = 0) -> torch.Tensor:
    r"""Eq. 9: :math:`\frac1N\sum_n E_q[(y_n - f(z))^2]` per output dimension (``per_dimension=True``,
    shape ``(q,)``) or averaged over them (a 0-dim tensor, the best shared :math:`\sigma^2`).

    ``model`` needs ``encode(x, y)`` and ``decode(x, z)`` (a :class:`~pyrovae.models.cvae.SigmaCVAE`;
    ``x`` has zero columns for an unconditional VAE).
    """
    integer_at_least("draws", draws)
    check_model_data(model, condition, observed)
    gen = torch.Generator(device=observed.device).manual_seed(seed) if seed is not None else None
    loc, scale = model.encode(condition, observed)
    total = torch.zeros(observed.shape[1], dtype=observed.dtype, device=observed.device)
    for _ in range(int(draws)):
        eps = torch.randn(loc.shape, generator=gen, dtype=loc.dtype, device=loc.device)
        total += (observed - model.decode(condition, loc + scale * eps)).pow(2).mean(0)
    per_dim = total / draws
    return per_dim if per_dimension else per_dim.mean()
