r"""Importance-sampled test log-likelihood.

For one data point,

.. math::
    \log p_\theta(y \mid x) \approx \log \frac1S \sum_{s=1}^S
        \frac{p_\theta(y \mid x, z^{(s)})\, p(z^{(s)})}{r(z^{(s)})},
    \qquad z^{(s)} \sim r,

computed as a log-sum-exp over the samples minus :math:`\log S`, in chunks of samples so
that memory stays bounded however large :math:`S` is. For a VAE the proposal :math:`r` is
the encoder's Gaussian :math:`q_\phi(z \mid x, y)` with its **variance inflated by a factor
2** (standard deviation :math:`\times\sqrt2`) and :math:`S = 5000` samples, as Yacoby, Pan & Doshi-Velez (2020)
does ("We inflated the variance of the proposal distribution by a factor of 2 ... We used
S=5000 samples").

The estimate is consistent in :math:`S` and, by Jensen's inequality, biased low in
expectation for finite :math:`S`. With ``return_diagnostics=True`` each function also returns
the importance-weight effective sample size :math:`(\sum w)^2 / \sum w^2` and the
delta-method standard error :math:`\sqrt{(S/\mathrm{ESS} - 1)/S}` of the log estimate.

References:
    Yacoby, Pan & Doshi-Velez, *Characterizing and Avoiding Problematic Global Optima of
    Variational Autoencoders* (Yacoby, Pan & Doshi-Velez 2020), App. E, Eq. 47-48.
    Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016, Eq. 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.validation import integer_at_least

__all__ = [
    "ImportanceDiagnostics",
    "gaussian_proposal",
    "importance_log_marginal",
    "vae_log_likelihood",
]

_LOG_2PI = math.log(2.0 * math.pi)
_DEFAULT_ROWS = 2**18  # samples × points evaluated at once when chunk_size is not given

Proposal = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``proposal(m) -> (z, log_r)``: ``m`` draws ``z`` of shape ``(m, n, ...)`` and their log densities ``(m, n)``."""


class _VAELike(Protocol):  # what vae_log_likelihood needs of a model (SigmaCVAE has it)
    noise: torch.nn.Module

    def encode(self, condition: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ImportanceDiagnostics:
    r"""Per-point reliability of an importance-sampled log-likelihood.

    Attributes:
        ess: effective sample size :math:`(\sum_s w_s)^2 / \sum_s w_s^2`, ``(n,)``; near
            ``num_samples`` the proposal is good, near 1 the estimate rests on one draw.
        std_error: delta-method standard error of the log estimate, ``(n,)``.
        num_samples: ``S``.
    """

    ess: torch.Tensor
    std_error: torch.Tensor
    num_samples: int


def gaussian_proposal(
    loc: torch.Tensor, scale: torch.Tensor, inflation: float = 2.0, generator: torch.Generator | None = None
) -> Proposal:
    r"""A diagonal Gaussian proposal :math:`N(\mathrm{loc}, \text{inflation}\cdot\mathrm{scale}^2)`.

    ``inflation`` multiplies the *variance* (Yacoby, Pan & Doshi-Velez 2020 uses 2). ``loc`` and ``scale`` are
    ``(n, d)``; the returned callable draws ``(m, n, d)`` and returns the log densities ``(m, n)``.
    """
    inflation = float(inflation)
    if not math.isfinite(inflation) or inflation <= 0:
        raise ConfigError(f"the variance inflation factor must be positive, got {inflation}")
    if loc.shape != scale.shape or loc.dim() < 1:
        raise ConfigError(f"proposal loc and scale must have the same shape (n, d), got {tuple(loc.shape)} and {tuple(scale.shape)}")
    loc, scale = loc.detach(), scale.detach() * math.sqrt(inflation)
    if not (torch.isfinite(loc).all() and torch.isfinite(scale).all()) or (scale <= 0).any():
        raise DataError("the proposal's location and scale must be finite, with positive scale")
    log_norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * _LOG_2PI

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.randn((m,) + tuple(loc.shape), generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + scale * eps, -0.5 * eps.pow(2).sum(-1) - log_norm

    return draw


@torch.no_grad()
def importance_log_marginal(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    proposal: Proposal,
    num_samples: int = 5000,
    chunk_size: int | None = None,
    return_diagnostics: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ImportanceDiagnostics]:
    r"""Generic importance-sampled :math:`\log \int p(y, z)\, dz` per data point.

    .. math::
        \widehat{\log p}(y_n) = \operatorname{logsumexp}_s
            \big[\log p(y_n, z_n^{(s)}) - \log r_n(z_n^{(s)})\big] - \log S

    (Yacoby, Pan & Doshi-Velez 2020, Eq. 48, with a general proposal). Any model can reuse it: an M2 model passes a
    ``log_joint`` that sums its label out, a linear model its closed-form joint.

    Args:
        log_joint: ``z (m, n, ...) -> (m, n)``: :math:`\log p(y_n, z)` for each draw and point
            (the prior term included).
        proposal: ``m -> (z, log_r)`` with ``z`` ``(m, n, ...)`` and ``log_r`` ``(m, n)``,
            e.g. :func:`gaussian_proposal`.
        num_samples: ``S`` (default 5000, Yacoby, Pan & Doshi-Velez (2020)).
        chunk_size: draws evaluated at once (memory bound); default: as many as keep
            ``chunk × n`` at about :math:`2^{18}`.
        return_diagnostics: also return :class:`ImportanceDiagnostics`.

    Returns:
        ``(n,)`` float64 estimates (and the diagnostics).
    """
    num_samples = integer_at_least("num_samples", num_samples)
    if chunk_size is not None:
        chunk_size = integer_at_least("chunk_size", chunk_size)
    lse = lse2 = None
    done = 0
    while done < num_samples:
        if chunk_size is None:  # size the chunks on the first draw, once the number of points is known
            z, log_r = proposal(1)
            chunk_size = max(1, _DEFAULT_ROWS // max(1, log_r.shape[-1]))
        else:
            z, log_r = proposal(min(chunk_size, num_samples - done))
        m = log_r.shape[0]
        log_w = log_joint(z).double() - log_r.double()
        if log_w.shape != log_r.shape:
            raise DataError(f"log_joint returned shape {tuple(log_w.shape)}, expected {tuple(log_r.shape)}")
        if torch.isnan(log_w).any():
            raise DataError("NaN importance weight: the model's log density or the proposal gave NaN")
        part, part2 = torch.logsumexp(log_w, 0), torch.logsumexp(2.0 * log_w, 0)
        lse = part if lse is None else torch.logaddexp(lse, part)
        lse2 = part2 if lse2 is None else torch.logaddexp(lse2, part2)
        done += m
    estimate = lse - math.log(num_samples)
    if not return_diagnostics:
        return estimate
    ess = torch.exp(2.0 * lse - lse2)
    std_error = ((num_samples / ess - 1.0).clamp_min(0.0) / num_samples).sqrt()
    return estimate, ImportanceDiagnostics(ess=ess, std_error=std_error, num_samples=num_samples)


def _check_data(condition: torch.Tensor, observed: torch.Tensor) -> None:
    if condition.dim() != 2 or observed.dim() != 2 or condition.shape[0] != observed.shape[0]:
        raise ConfigError(f"the condition and the observed data must be (n, p) and (n, q) with the same n, got {tuple(condition.shape)} and {tuple(observed.shape)}")
    if torch.isnan(condition).any() or torch.isnan(observed).any():
        raise DataError("x or y contains NaN")


@torch.no_grad()
def vae_log_likelihood(
    model: _VAELike,
    condition: torch.Tensor,
    observed: torch.Tensor,
    num_samples: int = 5000,
    inflation: float = 2.0,
    chunk_size: int | None = None,
    seed: int | None = 0,
    return_diagnostics: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ImportanceDiagnostics]:
    r"""Importance-sampled test log-likelihood :math:`\log p_\theta(y_n \mid x_n)` of a Gaussian VAE/CVAE.

    Model: :math:`z \sim N(0, I_d)`, :math:`y \mid x, z \sim N(\mu_\theta(x, z), \sigma^2)` with
    :math:`\sigma` from ``model.noise.scale(mean, inputs)`` (a scalar, per-output or, given what the
    observation model reads, ``model.noise_input(x, z)`` where the model has one, a per-point scale).
    Proposal: the encoder's :math:`N(\mathrm{loc}_\phi(x, y), \text{inflation}\cdot\mathrm{scale}_\phi(x,y)^2)`,
    with ``inflation = 2`` and ``S = 5000`` by default (Yacoby, Pan & Doshi-Velez 2020, App. E, Eq. 48).

    Works for any model exposing ``encode(x, y) -> (loc, scale)``, ``decode(x, z) -> mean``
    (``z`` with a leading sample dimension) and ``noise.scale(mean, inputs)``, such as
    :class:`~pyrovae.models.cvae.SigmaCVAE`; ``x`` may have zero columns (an unconditional VAE).

    Args:
        model: the VAE/CVAE.
        condition: conditioning inputs ``(n, p)``, ``p >= 0``.
        observed: the observed data ``(n, q)`` (what the VAE models).
        num_samples: ``S``.
        inflation: factor on the proposal's variance.
        chunk_size: draws per chunk (memory bound); see :func:`importance_log_marginal`.
        seed: seeds the proposal's draws (``None``: torch's global generator).
        return_diagnostics: also return :class:`ImportanceDiagnostics`.

    Returns:
        ``(n,)`` float64 per-point estimates of :math:`\log p(y_n \mid x_n)` (nats).
    """
    _check_data(condition, observed)
    loc, scale = model.encode(condition, observed)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=loc.device).manual_seed(int(seed))
    proposal = gaussian_proposal(loc, scale, inflation, generator=gen)

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        mean = model.decode(condition, z)
        inputs = model.noise_input(condition, z) if hasattr(model, "noise_input") else None
        sigma = model.noise.scale(mean, inputs)
        r = (observed - mean) / sigma
        log_lik = -(0.5 * r.pow(2) + torch.log(sigma).expand_as(r) + 0.5 * _LOG_2PI).sum(-1)
        log_prior = -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * _LOG_2PI)
        return log_lik + log_prior

    return importance_log_marginal(log_joint, proposal, num_samples, chunk_size, return_diagnostics)
