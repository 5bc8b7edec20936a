"""Networks fitted to a loss in the engine's loop: R replicates of one module, each its own fit.

Besides its VAEs the package trains a few networks to a plain loss: Dai, Wang & Wipf's (2020) deterministic
autoencoders (the depth study's, the linear one beside the γ bound) and the two-point VAE whose energy they
minimise (their §4), Yacoby, Pan & Doshi-Velez's (2021) data-generating networks fitted to an analytic
function (their App. G), and a ground-truth initialisation's decoder and encoder regressed on the true codes.
They train in :class:`~pyrovae.inference.engine.ReplicateEngine`'s loop, as the VAEs do: its Adam, its
per-replicate NaN policy (a diverged replicate stops with status ``nan`` and keeps its last good block's
weights), its checkpoints and resume, its progress bar and devices.

A fit is R modules of one architecture (stacked, :class:`StackedModules`) and a loss, ``loss(stack)``: the
``(R,)`` losses of every replicate, computed by calling the stack. Random mini-batches come from the stack's
per-replicate streams (``stack.streams``), so replicate ``r`` of a batch computes the fit its seed gives alone.
Every ``every`` steps (a block) each replicate's module is brought up to date and ``check(r, module)`` may stop
it (status ``converged``); ``schedule`` (``"one_cycle"``, ``"linear_decay"``) spans ``steps``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.engine import ReplicateEngine
from pyrovae.inference.replicates import ReplicaStreams, StackedModels
from pyrovae.models.stacked_nets import architecture, stacked_forward

__all__ = ["Fit", "FitResult", "StackedModules", "fit_module"]


class StackedModules(StackedModels):
    """R modules of one architecture called as one: ``stack(*inputs)`` is every replicate's ``module(*inputs)``,
    replicate first. Inputs carry a leading replicate dimension, or with ``shared=True`` are the same for all.
    ``stack(*inputs, part=name)`` calls the submodule ``name`` (two players of one fit, say). The package's plain
    networks run as one batched product per layer (:func:`~pyrovae.models.stacked_nets.stacked_forward`), any
    other module under :func:`torch.vmap`."""

    def __init__(self, template: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 streams: ReplicaStreams):
        super().__init__(template, params, buffers, streams)
        self._layers: dict[str, object] = {}  # part -> its stacked_forward (None: it runs under vmap)

    @staticmethod
    def check_architecture(models: Sequence[nn.Module]) -> None:
        first = architecture(models[0])
        if any(architecture(m) != first for m in models[1:]):
            raise ConfigError("modules fitted as one batch must share one architecture (layers, activations, dtypes)")

    def forward(self, *inputs: torch.Tensor, shared: bool = False, part: str = ""):
        """Every replicate's ``module(*inputs)``, or with ``part`` its submodule of that name's."""
        R = self.replicates
        module = self._template[0].get_submodule(part) if part else self._template[0]
        prefix = part + "." if part else ""
        if part not in self._layers:
            has_buffers = any(name.startswith(prefix) for name in self.stacked("buffer"))
            self._layers[part] = None if has_buffers else stacked_forward(module, prefix)
        layers = self._layers[part]
        if layers is not None and len(inputs) == 1 and inputs[0].dim() == (2 if shared else 3):
            x = inputs[0].expand(R, *inputs[0].shape) if shared else inputs[0]
            return layers(self.stacked("param"), x)
        params, buffers = ({name[len(prefix):]: t for name, t in self.stacked(kind).items() if name.startswith(prefix)}
                           for kind in ("param", "buffer"))

        def call(p, b, *a):
            return torch.func.functional_call(module, (p, b), a, tie_weights=False)

        if R == 1:  # no vmap: the plain module on replicate 0's views
            out = call({k: v[0] for k, v in params.items()}, {k: v[0] for k, v in buffers.items()},
                       *[a if shared else a[0] for a in inputs])
            return tuple(o.unsqueeze(0) for o in out) if isinstance(out, tuple) else out.unsqueeze(0)
        in_dims = (0, 0, *[None if shared else 0 for _ in inputs])
        return torch.vmap(call, in_dims=in_dims)(params, buffers, *inputs)


@dataclass
class FitResult:
    module: nn.Module  # the fitted module (the one given, its weights updated)
    status: str  # converged (its check stopped it) | max_steps | nan
    steps: int
    loss: float  # its loss at the last step of its last good block


class Fit(ReplicateEngine):
    """R modules fitted to ``loss`` (module docstring). ``run()`` returns one :class:`FitResult` per module and
    leaves each module with its fitted weights."""

    progress_label = "fitting"

    def __init__(self, modules: Sequence[nn.Module], loss: Callable[[StackedModules], torch.Tensor], *, steps: int,
                 lr: float, every: int = 100, check: Callable[[int, nn.Module], bool] | None = None,
                 schedule: str | None = None, seeds: Sequence[int] | None = None, clip_norm: float | None = None,
                 threads: int | None = None, run_dir: str | Path | None = None, checkpoint_every: int = 10,
                 progress: bool = False):
        if int(steps) < 0 or int(every) < 1:
            raise ConfigError(f"a fit needs steps >= 0 and every >= 1, got steps={steps}, every={every}")
        modules = list(modules)
        if not modules or not all(any(p.requires_grad for p in m.parameters()) for m in modules):
            raise ConfigError("every module of a fit needs parameters to fit")
        device = next(modules[0].parameters()).device
        super().__init__(modules, seeds, device, lr=lr, checkpoint_every=checkpoint_every, clip_norm=clip_norm,
                         threads=threads, run_dir=run_dir, progress=progress)
        self.loss, self.steps, self.every, self.check, self.schedule = loss, int(steps), int(every), check, schedule
        self.start()
        self.lr_schedule(schedule, self.steps)  # refuses an unknown schedule before any step

    # -- the engine's hooks ---------------------------------------------------------
    def _stack(self, models: Sequence[nn.Module], streams: ReplicaStreams) -> StackedModules:
        return StackedModules.stack(models, streams)

    def _capped(self) -> bool:
        return self.state.step >= self.steps

    def _progress_units(self) -> tuple[int, int]:
        return self.state.step, self.steps

    def _meta_state(self) -> dict:
        return {"fit": {"lr": self.lr, "every": self.every, "schedule": self.schedule,
                        "schedule_steps": self.steps if self.schedule else None}}

    def _check_checkpoint(self, meta: dict) -> None:
        if meta.get("fit") != self._meta_state()["fit"]:
            raise DataError(f"{self.run_dir}/checkpoint was written by a fit with other settings ({meta.get('fit')}); "
                            "fit into a new directory")

    def _block(self, start: float) -> None:
        s = self.state
        scheduler = self.lr_schedule(self.schedule, self.steps)
        for _ in range(min(self.every, self.steps - s.step)):
            losses = self.step(lambda: self.loss(self.stack))
            if scheduler is not None:
                scheduler.step()
            s.step += 1
        s.block += 1
        s.elapsed = time.perf_counter() - start
        for i, (r, loss) in enumerate(zip(list(self.active), losses.tolist())):
            if bool(self._diverged[i]):
                self._finish(i, "nan")  # its module keeps its last good block's weights
                continue
            rep = self.replicas[r]
            rep.prev_loss = loss
            rep.rows.append({"step": s.step, "loss": loss, "time": s.elapsed})
            self.stack.write_to(i, self.models[r])
            if self.check is not None and self.check(r, self.models[r]):
                self._finish(i, "converged")

    def _finish(self, i: int, status: str) -> None:
        super()._finish(i, status)
        rep = self.replicas[self.active[i]]
        last_good = rep.rows[-1]["step"] if rep.rows else 0
        rep.metrics = {"steps": last_good if status == "nan" else self.state.step, "loss": rep.prev_loss}

    def _result(self, r: int, resumed: bool) -> FitResult:
        rep = self.replicas[r]
        metrics = rep.metrics or {"steps": self.state.step, "loss": rep.prev_loss}
        loss = float("nan") if metrics["loss"] is None else float(metrics["loss"])
        return FitResult(self.models[r], rep.status, int(metrics["steps"]), loss)

    def scale_lr(self, factor: float, floor: float = 0.0) -> None:
        """Multiply the learning rate by ``factor``, not below ``floor`` (from a ``check``): a fit of one replicate
        only, since the replicates of a batch share one rate."""
        if len(self.active) != 1:
            raise ConfigError("the learning rate of a batched fit is shared by its replicates: change it for a fit "
                              "of one module only")
        for group in self.optim.param_groups:
            group["lr"] = max(group["lr"] * factor, floor)


def fit_module(module: nn.Module, loss: Callable[[StackedModules], torch.Tensor], **options) -> FitResult:
    """One module fitted to ``loss`` (:class:`Fit` with one replicate; ``options`` as :class:`Fit`'s)."""
    return Fit([module], loss, **options).run()[0]
