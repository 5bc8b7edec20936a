r"""The observation-noise variance that maximises the ELBO, and the residual-normality check.

For fixed encoder and decoder, the ELBO of a Gaussian decoder :math:`N(f_\theta(z), \mathrm{diag}(\sigma_d^2))`
is maximised by (seed 001, Eq. 9 and App. C.2, Eq. 30-31)

.. math::
    \sigma_d^2 = \frac1N \sum_{n=1}^N \mathbb{E}_{q_\phi(z \mid x_n)}\big[(x_n^{(d)} - f_\theta(z)^{(d)})^2\big],

and by its average over :math:`d` when one σ is shared by all dimensions (the analytic σ of seed 000,
Eq. 10). :func:`elbo_optimal_noise_variance` estimates the expectation with ``draws`` reparameterised
samples per point.

:func:`residual_normality` is guideline 4 of seed 001, Sec. 9: for each x find the closest point
:math:`f_\theta(z)` of the learned manifold, take the residual :math:`R = x - f_\theta(z)` and test it for
normality (Henze-Zirkler). A non-Gaussian residual suggests the manifold was misestimated.

References:
    Yacoby, Pan & Doshi-Velez (seed 001), Sec. 8 (Eq. 9), Sec. 9 (guideline 4), App. C.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.normality import HZResult, henze_zirkler_test

__all__ = ["elbo_optimal_noise_variance", "closest_latents", "ResidualCheck", "residual_normality"]


def _check(model, x: torch.Tensor, y: torch.Tensor) -> None:
    if y.dim() != 2 or x.dim() != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"need x (n, p) and y (n, q) with the same n, got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.shape[1] != model.y_dim or x.shape[1] != model.x_dim:
        raise ConfigError(f"model expects {model.x_dim} input and {model.y_dim} response columns; got {x.shape[1]} and {y.shape[1]}")


@torch.no_grad()
def elbo_optimal_noise_variance(model, x: torch.Tensor, y: torch.Tensor, draws: int = 100, per_dimension: bool = False,
                                seed: int | None = 0) -> torch.Tensor:
    r"""Eq. 9: :math:`\frac1N\sum_n E_q[(y_n - f(z))^2]` per output dimension (``per_dimension=True``,
    shape ``(q,)``) or averaged over them (a 0-dim tensor, the best shared :math:`\sigma^2`).

    ``model`` needs ``encode(x, y)`` and ``decode(x, z)`` (a :class:`~pyrovae.models.cvae.SigmaCVAE`;
    ``x`` has zero columns for an unconditional VAE).
    """
    if isinstance(draws, bool) or int(draws) != draws or draws < 1:
        raise ConfigError(f"draws must be a positive integer, got {draws!r}")
    _check(model, x, y)
    gen = torch.Generator(device=y.device).manual_seed(seed) if seed is not None else None
    loc, scale = model.encode(x, y)
    total = torch.zeros(y.shape[1], dtype=y.dtype, device=y.device)
    for _ in range(int(draws)):
        eps = torch.randn(loc.shape, generator=gen, dtype=loc.dtype, device=loc.device)
        total += (y - model.decode(x, loc + scale * eps)).pow(2).mean(0)
    per_dim = total / draws
    return per_dim if per_dimension else per_dim.mean()


def closest_latents(model, x: torch.Tensor, y: torch.Tensor, steps: int = 500, lr: float = 0.1) -> torch.Tensor:
    r""":math:`\arg\min_z \|y - f_\theta(x, z)\|^2` per point, by Adam from the encoder mean with the learning
    rate decaying linearly to 1% (the decoder is not changed)."""
    _check(model, x, y)
    with torch.no_grad():
        z0, _ = model.encode(x, y)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(1.0 - i / max(int(steps), 1), 0.01))
    for _ in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        loss = (y - model.decode(x, z)).pow(2).sum()
        grads = torch.autograd.grad(loss, [z])
        z.grad = grads[0]
        opt.step()
        sched.step()
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


def residual_normality(model, x: torch.Tensor, y: torch.Tensor, alpha: float = 0.05, steps: int = 500,
                       lr: float = 0.1, max_points: int | None = 2000) -> ResidualCheck:
    """Residuals :math:`R = y - f(z^*)` at the closest latent :math:`z^*` and the Henze-Zirkler test of R
    (on at most ``max_points`` points: the statistic is O(n²)).

    At the closest point the residual is orthogonal to the manifold, so R is (nearly) degenerate
    along the K tangent directions; the test runs on R's principal components whose variance is at
    least ``1e-2`` of the largest (the normal directions), not on the degenerate ones."""
    if max_points is not None and y.shape[0] > max_points:
        x, y = x[:max_points], y[:max_points]
    z = closest_latents(model, x, y, steps, lr)
    with torch.no_grad():
        r = y - model.decode(x, z)
        centred = r - r.mean(0)
        _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
        keep = sv.pow(2) >= 1e-2 * sv.pow(2).max()
        components = centred @ vh[keep].T
    return ResidualCheck(r, henze_zirkler_test(components, alpha), r.var(0))
