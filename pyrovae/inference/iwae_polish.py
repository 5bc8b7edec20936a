r"""A short importance-weighted polish of a trained σ-CVAE (ours, not in Liu & Wang 2025).

Liu & Wang (2025) train θ, φ on the ELBO with σ set by Eq. 10. The ELBO picks a decoder whose
posterior the mean-field q can follow; at high noise that decoder's own maximum-likelihood σ is
above the truth (two-moon, τ = 0.5: ≈ 10 %, docs/RESULTS.md, "Importance-weighted final σ"), and
no choice of σ for that decoder removes it. The polish moves the decoder itself: a few steps of
θ, φ and :math:`\log\sigma` (σ learned in the bound) on the importance-weighted bound of Burda,
Grosse & Salakhutdinov (2016), Eq. 8,

.. math::
    \mathcal L_K = \frac1n \sum_i \log \frac1K \sum_{k=1}^K
    \frac{N(y_i; \mu(x_i, z_{ik}), \sigma^2 I_q)\, N(z_{ik}; 0, I)}{q(z_{ik} \mid x_i, y_i)},
    \qquad z_{ik} \sim q(z \mid x_i, y_i),

which is the ELBO at K = 1 and tends to :math:`\frac1n\sum_i \log p(y_i \mid x_i)` as K grows, so its
optimum in θ and σ moves toward maximum likelihood. Fresh draws every step (from the run's
generator); Adam at the run's learning rate; blocks of ``block`` steps. After every block the
mean :math:`\log\sigma` and the mean :math:`-\mathcal L_K` per output dimension of that block go to
``stop`` (the robust variant passes its scale-free plateau test); the polish ends there, or after
``max_steps``. It runs in the engine's loop (:func:`~pyrovae.inference.fit.fit_module`, one replicate, blocks
of ``block`` steps); a non-finite loss or gradient puts the weights and σ back as they were before the
polish and ends it with ``status = "nan"``. A step decodes K × (points) × q numbers: where that
exceeds ``2^24`` (large data, e.g. MNIST-sized), each step takes a random subset of the points that
fits (the same budget as the chunks of :mod:`~pyrovae.inference.sigma_refinement`); two-moon
(K = 32, n = 1,000, q = 2) trains on every point.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from pyrovae.errors import ConfigError
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.inference.fit import fit_module
from pyrovae.validation import integer_at_least, real

__all__ = ["iwae_bound", "PolishResult", "iwae_polish"]

_LOG_2PI = math.log(2.0 * math.pi)
_STEP_BUDGET = 2**24  # decoded numbers per polish step (K × points × q); more points are subsampled


def iwae_bound(model: SigmaCVAE, condition: torch.Tensor, observed: torch.Tensor, log_sigma: torch.Tensor, particles: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Per point, :math:`\log \frac1K \sum_k w_{ik}` with ``particles`` = K reparameterised draws from
    ``model``'s encoder and the decoder scale :math:`\exp(\text{log\_sigma})`: a ``(n,)`` tensor,
    differentiable in the networks and in ``log_sigma`` (module docstring)."""
    loc, scale = model.encode(condition, observed)
    eps = torch.randn((particles,) + tuple(loc.shape), generator=generator, dtype=loc.dtype, device=loc.device)
    z = loc + scale * eps
    sq_err = (observed - model.decode(condition, z)).pow(2).sum(-1)  # (K, n)
    q = observed.shape[-1]
    log_lik = -0.5 * sq_err * torch.exp(-2.0 * log_sigma) - q * (log_sigma + 0.5 * _LOG_2PI)
    # log N(z; 0, I) − log q(z | x, y): the 2π terms cancel, and (z − loc)/scale = eps
    log_ratio = (0.5 * (eps.pow(2) - z.pow(2)) + scale.log()).sum(-1)
    return torch.logsumexp(log_lik + log_ratio, dim=0) - math.log(particles)


@dataclass
class PolishResult:
    """What :func:`iwae_polish` did."""

    sigma: float  # σ after the polish (the model's σ is set to it)
    steps: int  # gradient steps taken (nan: up to the end of its last good block; the polish is undone)
    status: str  # stopped | max_steps | nan


def iwae_polish(model: SigmaCVAE, condition: torch.Tensor, observed: torch.Tensor, particles: int, max_steps: int, block: int,
                lr: float, stop: Callable[[list[float], list[float]], bool],
                generator: torch.Generator | None = None) -> PolishResult:
    """Train ``model``'s encoder, decoder and σ on the K-particle bound (module docstring) until
    ``stop(log_sigma_per_block, loss_per_output_per_block)`` says so or ``max_steps`` are spent; set
    the model's σ (a settable observation model) to the bound's σ. Draws come from ``generator``."""
    particles = integer_at_least("polish particles", particles)
    max_steps = integer_at_least("polish steps", max_steps)
    block = integer_at_least("polish block", block)
    lr = real("the polish learning rate", lr, 0.0, strict=True)
    if not model.noise.settable:
        raise ConfigError(f"the polish sets sigma; the model's noise is {type(model.noise).__name__}")
    before = copy.deepcopy(model.state_dict())
    polished = _Polished(model)
    n, q = observed.shape[0], observed.shape[-1]
    batch = min(n, max(1, _STEP_BUDGET // (particles * q)))
    sigmas, losses = [], []  # per finished block: mean log σ after each step, mean loss per output
    block_sigma, block_loss = [], []  # the running block's
    calls = 0

    def loss_fn(stack) -> torch.Tensor:
        nonlocal calls
        if calls % block:  # the step before this one ended inside the running block: its log σ counts
            block_sigma.append(float(stack.stacked()["log_sigma"][0].detach()))
        calls += 1
        if batch < n:
            rows = torch.randperm(n, generator=generator, device=observed.device)[:batch]
            loss = stack(condition[rows], observed[rows], particles, generator, shared=True)
        else:
            loss = stack(condition, observed, particles, generator, shared=True)
        block_loss.append(float(loss.detach()))
        return loss

    def end_of_block(r: int, fitted: _Polished) -> bool:
        if len(block_loss) < block:  # the last block, cut short by max_steps
            return False
        block_sigma.append(float(fitted.log_sigma.detach()))
        sigmas.append(sum(block_sigma) / block)
        losses.append(sum(block_loss) / block / q)
        block_sigma.clear()
        block_loss.clear()
        return stop(sigmas, losses)

    frozen = [p.requires_grad for p in model.noise.parameters()]
    model.noise.requires_grad_(False)  # σ is the bound's own log σ while the polish runs
    try:
        outcome = fit_module(polished, loss_fn, steps=max_steps, lr=lr, every=block, check=end_of_block,
                             seeds=[0])  # draws come from generator, not the fit's stream
    finally:
        for p, f in zip(model.noise.parameters(), frozen):
            p.requires_grad_(f)
    sigma = float(polished.log_sigma.detach().exp())
    if outcome.status == "nan" or not (math.isfinite(sigma) and sigma > 0):
        model.load_state_dict(before)
        return PolishResult(model.sigma, outcome.steps, "nan")
    model.noise.set_sigma(sigma)
    return PolishResult(sigma, outcome.steps, "stopped" if outcome.status == "converged" else "max_steps")


class _Polished(nn.Module):
    """What the polish trains: ``model``'s networks (its observation model frozen) and the bound's own log σ,
    from the model's σ. Its forward is minus the mean K-particle bound."""

    def __init__(self, model: SigmaCVAE):
        super().__init__()
        self.model = model
        param = next(model.parameters())
        self.log_sigma = nn.Parameter(torch.tensor(math.log(model.sigma), dtype=param.dtype, device=param.device))

    def forward(self, condition: torch.Tensor, observed: torch.Tensor, particles: int,
                generator: torch.Generator | None) -> torch.Tensor:
        return -iwae_bound(self.model, condition, observed, self.log_sigma, particles, generator).mean()
