"""The package's optimisers: every one is defined here, and built here or in the engine.

Training a model goes through the engine (:class:`pyrovae.inference.engine.ReplicateEngine`), whose
optimisers are :func:`adam` (all replicates step) and :class:`ReplicateAdam` (some replicates step), stepped
by :func:`step_replicates`. What is not a model's training — a decoder regressed on known codes, a generating
network fitted to a function, a closed-form objective minimised by L-BFGS, per-point variational fits, the
players of an adversarial fit — goes through a :class:`Minimiser`. The speed settings (fused Adam) and the
NaN policy are decided once: a step whose loss or gradient is not finite is not applied (per replicate in the
engine), and the run stops with status ``"nan"`` (``on_nan="raise"`` raises :class:`TrainingDiverged`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from pyrovae.errors import ConfigError, TrainingDiverged

__all__ = ["adam", "lr_schedule", "Minimised", "Minimiser", "ReplicateAdam", "select_replicates", "step_replicates"]


def adam(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with torch's defaults (β = (0.9, 0.999), ε = 1e-8; adversarial fits pass their own β), fused where
    torch supports it (CPU and CUDA, float32 / float64): the same update to rounding, in one kernel per step."""
    params = list(params)
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"the learning rate must be positive, got {lr}")
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)


def _lbfgs(params: list[torch.Tensor], max_iter: int, tolerance_grad: float,
           tolerance_change: float) -> torch.optim.LBFGS:
    """L-BFGS with a strong-Wolfe line search, for smooth deterministic objectives."""
    return torch.optim.LBFGS(params, max_iter=int(max_iter), line_search_fn="strong_wolfe",
                             tolerance_grad=tolerance_grad, tolerance_change=tolerance_change)


#: the fraction of its starting rate that ``schedule="linear_decay"`` ends at and holds
LINEAR_DECAY_FLOOR = 0.01


def lr_schedule(optimizer: torch.optim.Optimizer, name: str | None, lr: float,
              steps: int | None) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``"one_cycle"``: Smith's one-cycle schedule over ``steps`` steps, peaking at ``lr``; ``"linear_decay"``: the
    rate falling linearly from ``lr`` to 1 % of it over ``steps`` steps, then held; None (or ``steps = 0``, a fit
    of no steps): constant."""
    if name is None:
        return None
    if steps is None or int(steps) < 0:
        raise ConfigError(f"the {name!r} schedule needs the number of steps it spans (steps >= 0), got {steps}")
    steps = int(steps)
    if steps == 0:
        return None
    if name == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    if name == "linear_decay":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(1.0 - i / steps, LINEAR_DECAY_FLOOR))
    raise ConfigError(f"unknown learning-rate schedule {name!r}: one_cycle, linear_decay or None")


@dataclass
class Minimised:
    status: str  # done | stopped | nan
    steps: int
    loss: float  # the last finite loss


class Minimiser:
    """One optimiser over ``params`` with the package's NaN policy, for every fit that is not a model's training
    (that is the engine's, :class:`pyrovae.inference.engine.ReplicateEngine`): a decoder regressed on known codes,
    a generating network fitted to a function, a closed-form objective, per-point variational fits, the two
    players of an adversarial fit. Build one with :meth:`adam` or :meth:`lbfgs`; :meth:`step` takes one step,
    :meth:`run` a loop of them.

    The NaN policy (the engine's, for one replicate): a step whose loss or gradient is not finite is not applied.
    """

    def __init__(self, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None):
        self.optimizer, self.scheduler = optimizer, scheduler
        self._params = [p for group in optimizer.param_groups for p in group["params"]]

    @classmethod
    def adam(cls, params: Iterable[torch.Tensor], lr: float, *, betas: tuple[float, float] = (0.9, 0.999),
             schedule: str | None = None, steps: int | None = None) -> "Minimiser":
        """Adam (:func:`adam`); ``schedule`` (``"one_cycle"``, ``"linear_decay"``) spans ``steps`` steps."""
        optimizer = adam(params, lr, betas)
        return cls(optimizer, lr_schedule(optimizer, schedule, lr, steps))

    @classmethod
    def lbfgs(cls, params: Iterable[torch.Tensor], max_iter: int, *, tolerance_grad: float = 1e-10,
              tolerance_change: float = 1e-12) -> "Minimiser":
        """L-BFGS with a strong-Wolfe line search, for smooth deterministic objectives; one :meth:`step` is
        up to ``max_iter`` of its iterations."""
        return cls(_lbfgs(list(params), max_iter, tolerance_grad, tolerance_change))

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def scale_lr(self, factor: float, floor: float = 0.0) -> None:
        """Multiply the learning rate by ``factor``, not below ``floor``."""
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * factor, floor)

    def step(self, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One step on ``loss_fn()`` (a fresh scalar each call); returns the loss (detached). Adam: a non-finite
        loss or gradient leaves the parameters as they were and returns NaN. L-BFGS: a non-finite first loss
        does; a non-finite value met later inside its line search is L-BFGS's own to handle."""
        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            if torch.isfinite(loss):
                loss.backward()
            return loss

        if isinstance(self.optimizer, torch.optim.LBFGS):
            loss = self.optimizer.step(closure)
        else:
            loss = closure()
            grads = [p.grad for p in self._params if p.grad is not None]
            if torch.isfinite(loss) and grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                loss = loss.new_tensor(math.nan)
            if torch.isfinite(loss):
                self.optimizer.step()
        if not torch.isfinite(loss):
            return loss.detach().new_tensor(math.nan)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    def run(self, loss_fn: Callable[[], torch.Tensor], steps: int, every: int = 0,
            check: Callable[[int], bool] | None = None, on_nan: str = "stop") -> Minimised:
        """``steps`` :meth:`step` s on ``loss_fn``. ``check(step)`` runs after every ``every`` steps (and after the
        last); returning True stops the loop early (status ``"stopped"``). A non-finite step ends it with
        status ``"nan"`` (``on_nan="raise"``: :class:`~pyrovae.errors.TrainingDiverged`)."""
        if on_nan not in ("stop", "raise"):
            raise ConfigError(f"on_nan must be 'stop' or 'raise', got {on_nan!r}")
        last = math.nan
        for step in range(1, int(steps) + 1):
            loss = self.step(loss_fn)
            if not torch.isfinite(loss):
                if on_nan == "raise":
                    raise TrainingDiverged(f"the loss turned non-finite at step {step}")
                return Minimised("nan", step - 1, last)
            last = float(loss)
            if check is not None and every > 0 and (step % every == 0 or step == steps) and check(step):
                return Minimised("stopped", step, last)
        return Minimised("done", int(steps), last)


class ReplicateAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015, torch's update and defaults) over stacked parameters whose leading dimension is the
    replicate, each replicate with its own step count: ``step(mask)`` moves the replicates where ``mask`` is True
    and leaves the others exactly as they were — weights, moments and step count. Replicate ``r`` follows the path
    of :class:`torch.optim.Adam` over its own slice stepped only where its mask was True (to float rounding).

    The engine's own optimiser stays torch's fused Adam; this one serves a plug-in whose replicates take different
    numbers of steps in one batch (Lagging Inference Networks' encoder loops of their own lengths)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"the learning rate must be positive, got {lr}")
        super().__init__(list(params), dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, mask: torch.Tensor | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                live = torch.ones(p.shape[0], dtype=torch.bool, device=p.device) if mask is None else mask.to(p.device)
                shape = (-1,) + (1,) * (p.dim() - 1)
                moves = live.reshape(shape)
                grad = p.grad
                step = state["step"] + live
                exp_avg = torch.where(moves, state["exp_avg"].lerp(grad, 1 - beta1), state["exp_avg"])
                exp_avg_sq = torch.where(moves, state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad,
                                         state["exp_avg_sq"])
                t = step.clamp(min=1).to(torch.float64)  # bias corrections in double precision, as torch's scalars
                step_size = (lr / (1 - beta1 ** t)).to(p.dtype).reshape(shape)
                correction2 = (1 - beta2 ** t).sqrt().to(p.dtype).reshape(shape)
                update = exp_avg / (exp_avg_sq.sqrt() / correction2 + eps) * step_size
                p.sub_(torch.where(moves, update, torch.zeros_like(update)))
                state["step"], state["exp_avg"], state["exp_avg_sq"] = step, exp_avg, exp_avg_sq


def select_replicates(state: dict, keep: torch.Tensor) -> dict:
    """An optimiser's ``state_dict`` over stacked parameters narrowed to the replicates ``keep`` (indices along the
    leading replicate dimension of every per-parameter tensor, :class:`ReplicateAdam`'s step counts among them;
    scalar state, such as torch's Adam's step, stays): the state an optimiser over the narrowed stack loads."""
    for per_param in state["state"].values():
        for key, value in per_param.items():
            if torch.is_tensor(value) and value.dim() > 0:
                per_param[key] = value.index_select(0, keep)
    return state


def step_replicates(losses: torch.Tensor, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
                    clip_norm: float | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on ``R`` independent losses ``(R,)`` of replicates whose parameters carry a leading
    replicate dimension (they share none), the gradients already zeroed; returns which replicates are fine
    (stepped, or sat the step out).
    ``optimizer`` may be several optimisers over disjoint parameters, stepped together.

    The NaN policy per replicate: one whose loss or gradient is not finite gets a zero gradient, so Adam's
    moments of the others are those of their own runs, and is reported ``False`` (the caller stops it); when
    none is finite nothing is applied. ``clip_norm`` clips each replicate's own gradient norm (as
    :func:`torch.nn.utils.clip_grad_norm_` on one run).

    ``mask`` ``(R,)``: only the replicates where it is True step; the others' losses are ignored, they are
    reported True, and every optimiser must be a :class:`ReplicateAdam`, which leaves them as they were (it
    also leaves a diverged replicate's weights and moments alone)."""
    optimizers = list(optimizer) if isinstance(optimizer, Sequence) else [optimizer]
    if mask is not None and not all(isinstance(opt, ReplicateAdam) for opt in optimizers):
        raise ConfigError("a step of some replicates only needs ReplicateAdam optimisers: torch's Adam would move "
                          "the others' weights by their moments")
    idle = torch.zeros_like(losses, dtype=torch.bool) if mask is None else ~mask
    live = torch.isfinite(losses.detach()) & ~idle
    if not bool(live.any()):
        return live | idle
    losses.where(live, torch.zeros_like(losses)).sum().backward()
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        raise ConfigError("nothing to train: no parameter of the optimiser received a gradient")
    # one norm over the replicates' gradients side by side: two kernels, not two per parameter (the copy that
    # torch.cat makes is one more pass over the gradients, cheaper than a kernel launch per parameter here)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.reshape(p.shape[0], -1) for p in params], 1), dim=1)
    live &= torch.isfinite(norm)  # a finite loss with an overflowing gradient: not applied either
    if not bool(live.any()):
        return live | idle
    factor = live.to(norm.dtype)
    if clip_norm is not None:
        factor = factor * (clip_norm / (norm.nan_to_num(0.0) + 1e-6)).clamp(max=1.0)
    everyone = bool(live.all())
    if not everyone or clip_norm is not None:
        for p in params:
            p.grad.nan_to_num_(0.0).mul_(factor.reshape((-1,) + (1,) * (p.dim() - 1)))
    for opt in optimizers:
        if isinstance(opt, ReplicateAdam):
            opt.step(None if everyone else live)
        else:
            opt.step()
    return live | idle
