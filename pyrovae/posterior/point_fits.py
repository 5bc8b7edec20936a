r"""Fits per point with the model fixed: the best mean-field Gaussian q of every point and the noise variance
it implies, and the closest point of the learned manifold with guideline 4's residual check.

:func:`mean_field_noise_variance` is Yacoby, Pan & Doshi-Velez (2021) Eq. 9 under the best *per-point*
mean-field Gaussian instead of the encoder's q (:func:`pyrovae.metrics.noise_fit.elbo_optimal_noise_variance`):
the gap between the two is the encoder's amortisation, the gap to
:func:`pyrovae.posterior.noise_variance.exact_posterior_noise_variance` the mean-field family's own.

:func:`residual_normality` is guideline 4 of Yacoby, Pan & Doshi-Velez (2021), Sec. 9: for each x find the closest
point :math:`f_\theta(z)` of the learned manifold, take the residual :math:`R = x - f_\theta(z)` and test it for
normality (Henze-Zirkler). A non-Gaussian residual suggests the manifold was misestimated.

Both fits are Adam in the engine's loop (:func:`pyrovae.inference.fit.fit_module`, one replicate whose
parameters are the per-point variables), with every parameter of the model frozen.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 8 (Eq. 9), Sec. 9 (guideline 4), App. C.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.fit import fit_module
from pyrovae.metrics.noise_fit import check_model_data
from pyrovae.metrics.normality import HZResult, henze_zirkler_test

__all__ = ["ResidualCheck", "closest_latents", "mean_field_noise_variance", "residual_normality"]


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
    start = loc0.detach().clone().to(observed.dtype)
    q = nn.ParameterDict({"loc": start, "log_scale": torch.full_like(start, math.log(scale0))})
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)

    def loss(stack) -> torch.Tensor:
        loc, log_s = stack.stacked()["loc"][0], stack.stacked()["log_scale"][0]
        z = loc + log_s.exp() * torch.randn((particles, *loc.shape), generator=gen, dtype=loc.dtype, device=loc.device)
        mean, sigma = model.mean_and_scale(condition.expand(particles, *condition.shape), z)
        rec = ((observed - mean).pow(2) / (2 * sigma**2) + torch.log(sigma)).sum(-1).mean(0)
        kl = 0.5 * (loc.pow(2) + (2 * log_s).exp() - 1 - 2 * log_s).sum(-1)
        return (rec + kl).sum().reshape(1)

    try:
        fit_module(q, loss, steps=steps, lr=lr, every=max(1, steps), seeds=[seed])  # draws from gen, not the stream
    finally:
        for p, f in zip(model.parameters(), frozen):
            p.requires_grad_(f)
    loc, log_s = q["loc"].detach(), q["log_scale"].detach()
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
    codes = nn.ParameterDict({"z": z0.clone()})
    frozen = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # only z moves; no gradient lands on the decoder
    try:
        fit_module(codes, lambda stack: (observed - model.decode(condition, stack.stacked()["z"][0])).pow(2).sum().reshape(1),
                   steps=steps, lr=lr, every=max(1, steps), schedule="linear_decay", seeds=[0])
    finally:
        for p, f in zip(model.parameters(), frozen):
            p.requires_grad_(f)
    return codes["z"].detach()


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
