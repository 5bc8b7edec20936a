"""The package's optimisers and its one plain minimisation loop.

Training a VAE goes through :class:`pyrovae.inference.trainer.Trainer`. What is not a VAE's
training — a decoder regressed on known codes, a generating network fitted to a function, a
closed-form objective minimised by L-BFGS, per-point variational fits — goes through
:func:`minimise`. Both build their optimisers here, so speed settings (fused Adam) and the NaN
policy are decided once: a step whose loss or gradient is not finite is not applied, and the
loop stops with status ``"nan"`` (``on_nan="raise"`` raises :class:`TrainingDiverged` instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from pyrovae.errors import ConfigError, TrainingDiverged

__all__ = ["adam", "lbfgs", "one_cycle", "Minimised", "minimise", "select_replicates", "step_replicates"]


def adam(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8; adversarial fits pass their own β), fused where
    torch supports it (CPU and CUDA, float32 / float64): the same update to rounding, in one kernel per step."""
    params = list(params)
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"the learning rate must be positive, got {lr}")
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)


def lbfgs(params: Iterable[torch.Tensor], max_iter: int, tolerance_grad: float = 1e-10,
          tolerance_change: float = 1e-12) -> torch.optim.LBFGS:
    """L-BFGS with a strong-Wolfe line search, for smooth deterministic objectives."""
    return torch.optim.LBFGS(list(params), max_iter=int(max_iter), line_search_fn="strong_wolfe",
                             tolerance_grad=tolerance_grad, tolerance_change=tolerance_change)


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """Smith's one-cycle learning-rate schedule over ``steps`` steps, peaking at ``lr``."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(int(steps), 1))


def linear_decay(optimizer: torch.optim.Optimizer, steps: int, floor: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate falling linearly from its start to ``floor`` times it over ``steps`` steps, then held."""
    steps = max(int(steps), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(1.0 - i / steps, floor))


@dataclass
class Minimised:
    status: str  # done | stopped | nan
    steps: int
    loss: float  # the last finite loss


def minimise(loss_fn: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, steps: int,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
             every: int = 0, check: Callable[[int], bool] | None = None, on_nan: str = "stop") -> Minimised:
    """``steps`` optimiser steps on ``loss_fn()`` (a fresh scalar each call).

    ``check(step)`` runs after every ``every`` steps (and after the last); returning True stops the
    loop early (status ``"stopped"``). An L-BFGS optimiser takes one ``step(closure)`` per step.
    A non-finite loss or gradient: the step is not applied, then status ``"nan"``
    (``on_nan="raise"``: :class:`~pyrovae.errors.TrainingDiverged`).
    """
    if on_nan not in ("stop", "raise"):
        raise ConfigError(f"on_nan must be 'stop' or 'raise', got {on_nan!r}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    last = math.nan

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        if torch.isfinite(loss):
            loss.backward()
        return loss

    for step in range(1, int(steps) + 1):
        if isinstance(optimizer, torch.optim.LBFGS):
            loss = optimizer.step(closure)
        else:
            loss = closure()
            grads = [p.grad for p in params if p.grad is not None]
            if torch.isfinite(loss) and grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                loss = loss.new_tensor(math.nan)
            if torch.isfinite(loss):
                optimizer.step()
        if not torch.isfinite(loss):
            if on_nan == "raise":
                raise TrainingDiverged(f"the loss turned non-finite at step {step}")
            return Minimised("nan", step - 1, last)
        last = float(loss.detach())
        if scheduler is not None:
            scheduler.step()
        if check is not None and every > 0 and (step % every == 0 or step == steps) and check(step):
            return Minimised("stopped", step, last)
    return Minimised("done", int(steps), last)


def select_replicates(state: dict, keep: torch.Tensor) -> dict:
    """An optimiser's ``state_dict`` over stacked parameters narrowed to the replicates ``keep`` (indices along the
    leading replicate dimension of every per-parameter tensor; scalar state, such as Adam's step, stays): the state
    an optimiser over the narrowed stack loads."""
    for per_param in state["state"].values():
        for key, value in per_param.items():
            if torch.is_tensor(value) and value.dim() > 0:
                per_param[key] = value.index_select(0, keep)
    return state


def step_replicates(losses: torch.Tensor, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
                    clip_norm: float | None = None) -> torch.Tensor:
    """One optimiser step on ``R`` independent losses ``(R,)`` of replicates whose parameters carry a leading
    replicate dimension (they share none), the gradients already zeroed; returns which replicates stepped.
    ``optimizer`` may be several optimisers over disjoint parameters, stepped together.

    The NaN policy per replicate: one whose loss or gradient is not finite gets a zero gradient, so Adam's
    moments of the others are those of their own runs, and is reported ``False`` (the caller stops it); when
    none is finite nothing is applied. ``clip_norm`` clips each replicate's own gradient norm (as
    :func:`torch.nn.utils.clip_grad_norm_` on one run)."""
    ok = torch.isfinite(losses.detach())
    if not bool(ok.any()):
        return ok
    losses.where(ok, torch.zeros_like(losses)).sum().backward()
    optimizers = list(optimizer) if isinstance(optimizer, Sequence) else [optimizer]
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        raise ConfigError("nothing to train: no parameter of the optimiser received a gradient")
    norm = torch.stack([p.grad.reshape(p.shape[0], -1).pow(2).sum(1) for p in params]).sum(0).sqrt()
    ok &= torch.isfinite(norm)  # a finite loss with an overflowing gradient: not applied either
    if not bool(ok.any()):
        return ok
    factor = ok.to(norm.dtype)
    if clip_norm is not None:
        factor = factor * (clip_norm / (norm.nan_to_num(0.0) + 1e-6)).clamp(max=1.0)
    if not bool(ok.all()) or clip_norm is not None:
        for p in params:
            p.grad.nan_to_num_(0.0).mul_(factor.reshape((-1,) + (1,) * (p.dim() - 1)))
    for opt in optimizers:
        opt.step()
    return ok
