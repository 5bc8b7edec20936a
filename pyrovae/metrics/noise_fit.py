r"""The observation-noise variance that maximises the ELBO, and the residual-normality check.

For fixed encoder and decoder, the ELBO of a Gaussian decoder :math:`N(f_\theta(z), \mathrm{diag}(\sigma_d^2))`
is maximised by (Yacoby, Pan & Doshi-Velez 2021, Eq. 9 and App. C.2, Eq. 30-31)

.. math::
    \sigma_d^2 = \frac1N \sum_{n=1}^N \mathbb{E}_{q_\phi(z \mid x_n)}\big[(x_n^{(d)} - f_\theta(z)^{(d)})^2\big],

and by its average over :math:`d` when one σ is shared by all dimensions (the analytic σ of Liu & Wang (2025),
Eq. 10). :func:`elbo_optimal_noise_variance` estimates the expectation with ``draws`` reparameterised
samples per point.

:func:`residual_normality` is guideline 4 of Yacoby, Pan & Doshi-Velez (2021), Sec. 9: for each x find the closest point
:math:`f_\theta(z)` of the learned manifold, take the residual :math:`R = x - f_\theta(z)` and test it for
normality (Henze-Zirkler). A non-Gaussian residual suggests the manifold was misestimated.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 8 (Eq. 9), Sec. 9 (guideline 4), App. C.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.normality import HZResult, henze_zirkler_test
from pyrovae.optim import Minimiser
from pyrovae.validation import integer_at_least

__all__ = [
    "check_model_data",
    "ResidualCheck",
    "closest_latents",
    "elbo_optimal_noise_variance",
    "mean_field_noise_variance",
    "residual_normality",
]


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


def mean_field_noise_variance(model, condition: torch.Tensor, observed: torch.Tensor, loc0: torch.Tensor, scale0: float = 0.01,
                              steps: int = 3000, lr: float = 1e-3, particles: int = 8, draws: int = 200,
                              per_dimension: bool = False, seed: int = 0) -> torch.Tensor:
    r"""Eq. 9 under the best *per-point* mean-field Gaussian :math:`q_n = N(m_n, \mathrm{diag}(s_n^2))`: the
    ELBO of every point maximised over its own :math:`(m_n, s_n)` (no encoder network, so no amortisation
    gap) with the decoder and noise fixed, by full-batch Adam from ``loc0`` and ``scale0``.

    Between :func:`pyrovae.posterior.noise_variance.exact_posterior_noise_variance` (the truth) and :func:`elbo_optimal_noise_variance` with
    a trained encoder, this isolates what the mean-field family itself adds to the noise estimate."""
    check_model_data(model, condition, observed)
    if steps < 0 or particles < 1 or draws < 1 or not lr > 0 or not scale0 > 0:
        raise ConfigError("mean_field_noise_variance needs steps >= 0, particles, draws >= 1, lr and scale0 > 0")
    if loc0.shape != (observed.shape[0], model.latent_dim):
        raise DataError(f"loc0 must be ({observed.shape[0]}, {model.latent_dim}), got {tuple(loc0.shape)}")
    gen = torch.Generator(device=observed.device).manual_seed(seed)
    loc = loc0.detach().clone().to(observed.dtype).requires_grad_(True)
    log_s = torch.full_like(loc, math.log(scale0)).requires_grad_(True)
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    def loss() -> torch.Tensor:
        z = loc + log_s.exp() * torch.randn((particles, *loc.shape), generator=gen, dtype=loc.dtype, device=loc.device)
        mean, sigma = model.mean_and_scale(condition.expand(particles, *condition.shape), z)
        rec = ((observed - mean).pow(2) / (2 * sigma**2) + torch.log(sigma)).sum(-1).mean(0)
        kl = 0.5 * (loc.pow(2) + (2 * log_s).exp() - 1 - 2 * log_s).sum(-1)
        return (rec + kl).sum()

    try:
        Minimiser.adam([loc, log_s], lr).run(loss, steps)
    finally:
        for p, f in zip(model.parameters(), frozen):
            p.requires_grad_(f)
    with torch.no_grad():
        total = torch.zeros(observed.shape[1], dtype=observed.dtype, device=observed.device)
        for _ in range(int(draws)):
            z = loc + log_s.exp() * torch.randn(loc.shape, generator=gen, dtype=loc.dtype, device=loc.device)
            total += (observed - model.decode(condition, z)).pow(2).mean(0)
    per_dim = total / draws
    return per_dim if per_dimension else per_dim.mean()


def closest_latents(model, condition: torch.Tensor, observed: torch.Tensor, steps: int = 500, lr: float = 0.1) -> torch.Tensor:
    r""":math:`\arg\min_z \|y - f_\theta(x, z)\|^2` per point, by Adam from the encoder mean with the learning
    rate decaying linearly to 1% (the decoder is not changed)."""
    check_model_data(model, condition, observed)
    with torch.no_grad():
        z0, _ = model.encode(condition, observed)
    z = z0.clone().requires_grad_(True)
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # only z moves; no gradient lands on the decoder
    try:
        Minimiser.adam([z], lr, schedule="linear_decay", steps=steps).run(
            lambda: (observed - model.decode(condition, z)).pow(2).sum(), steps)
    finally:
        for p, f in zip(model.parameters(), frozen):
            p.requires_grad_(f)
    return z.detach()


@dataclass(frozen=True)
class ResidualCheck:
    """Guideline 4: the residuals, their Henze-Zirkler test and their per-dimension variance."""

    residuals: torch.Tensor
    test: HZResult
    variance: torch.Tensor

    @property
    def normal(self) -> bool:
        return self.test.normal


def residual_normality(model, condition: torch.Tensor, observed: torch.Tensor, alpha: float = 0.05, steps: int = 500,
                       lr: float = 0.1, max_points: int | None = 2000) -> ResidualCheck:
    r"""Residuals :math:`R = y - f(z^*)` at the closest latent :math:`z^*` and the Henze-Zirkler test of R
    (on at most ``max_points`` points: the statistic is O(n²)).

    At the closest point the residual is orthogonal to the manifold. For a curve in the plane (1-D latent,
    2-D data, the paper's examples) the test runs on the *signed normal component*
    :math:`R \cdot n(z^*)`, :math:`n` the tangent :math:`f'(z^*)` turned by 90°: for the true model this is
    :math:`N(0, \sigma_\varepsilon^2)` up to curvature, while the 2-D vector R is not Gaussian on a curved
    manifold even then (its direction follows the normal). Otherwise the test runs on R's principal
    components whose variance is at least ``1e-2`` of the largest (the normal directions)."""
    if max_points is not None and observed.shape[0] > max_points:
        condition, observed = condition[:max_points], observed[:max_points]
    z = closest_latents(model, condition, observed, steps, lr)
    with torch.no_grad():
        r = observed - model.decode(condition, z)
    if model.latent_dim == 1 and observed.shape[1] == 2:
        zt = z.clone().requires_grad_(True)
        with torch.enable_grad():
            f = model.decode(condition, zt)
            tangent = torch.stack([torch.autograd.grad(f[:, d].sum(), zt, retain_graph=True)[0][:, 0] for d in range(2)], -1)
        normal = torch.stack([-tangent[:, 1], tangent[:, 0]], -1)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        components = (r * normal).sum(-1, keepdim=True)
    else:
        with torch.no_grad():
            centred = r - r.mean(0)
            _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
            keep = sv.pow(2) >= 1e-2 * sv.pow(2).max()
            components = centred @ vh[keep].T
    return ResidualCheck(r, henze_zirkler_test(components.detach(), alpha), r.var(0))
