"""The training engine: R replicates of one model family trained as one batch, in the package's one loop.

Every trainable VAE of the package trains here: the σ-CVAE family (:class:`~pyrovae.inference.trainer.Trainer`:
blocks of ``K`` steps, an algorithm plug-in between blocks) and M2
(:class:`~pyrovae.inference.m2_training.M2Trainer`: blocks of one epoch of labelled + unlabelled batches). The
engine owns what they share, so it exists once:

* the replicates still training, stacked into one module (:class:`~pyrovae.inference.replicates.StackedModels`),
  each drawing from its own stream (:class:`~pyrovae.inference.replicates.ReplicaStreams`);
* the optimiser (Adam) and the step of R independent losses with the per-replicate NaN and clipping policy
  (:func:`pyrovae.optim.step_replicates`): a diverged replicate stops with status ``nan`` and keeps the weights
  of its last good block, the others go on;
* a finished replicate leaves the batch (its Adam state is sliced out, :func:`pyrovae.optim.select_replicates`),
  and so do its rows of the plug-ins' optimisers (:meth:`ReplicateEngine.plugin_optimizer`, which may step some
  replicates and not others);
* the loop: blocks until every replicate has stopped or the cap is reached, a checkpoint every
  ``checkpoint_every`` blocks and at the end (tensors and JSON, :func:`pyrovae.runs.save_checkpoint`), from which a
  rerun resumes and ends in the uninterrupted run's state (CPU); a larger cap trains on;
* the progress bar.

A family says what its stack is, what one block does (its steps and the decisions after them), what a
replicate's result is and what else its checkpoint holds.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.replicates import ReplicaStreams, StackedModels
from pyrovae.optim import ReplicateAdam, adam, lr_schedule, select_replicates, step_replicates
from pyrovae.runs import has_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["LoopState", "Replica", "ReplicateEngine"]


@dataclass
class LoopState:
    """Counters shared by every replicate (they train in lock-step)."""

    block: int = 0
    step: int = 0
    elapsed: float = 0.0


@dataclass
class Replica:
    """What is decided per replicate: its history rows, status, final metrics and last block loss."""

    rows: list[dict] = field(default_factory=list)
    status: str = "running"  # running | converged | collapsed | max_steps | nan
    metrics: dict[str, Any] | None = None
    prev_loss: float | None = None


class ReplicateEngine:
    """The loop, optimiser, NaN policy, checkpoints and progress of R replicates (module docstring).

    A subclass builds its models and data, calls :meth:`start`, and implements :meth:`_stack` (the models as one
    stacked module), :meth:`_capped` (the cap is reached), :meth:`_block` (one block: its steps, then per
    replicate a history row and :meth:`_finish` for those that stop) and :meth:`_result`; it may extend
    :meth:`_trainable`, :meth:`_on_activate`, :meth:`_finish` and the checkpoint hooks."""

    progress_label = "training"

    def __init__(self, models: Sequence[torch.nn.Module], seeds: Sequence[int] | None, device: torch.device, *,
                 lr: float, checkpoint_every: int, clip_norm: float | None = None, threads: int | None = None,
                 run_dir: str | Path | None = None, progress: bool = False, betas: tuple[float, float] = (0.9, 0.999)):
        self.models = list(models)
        R = len(self.models)
        if R < 1:
            raise ConfigError("need at least one model to train")
        if seeds is None:
            seeds = [int(torch.randint(0, 2**62, ())) for _ in range(R)]
        if len(seeds) != R:
            raise ConfigError(f"{len(seeds)} seeds for {R} replicates")
        self.seeds = [int(s) for s in seeds]
        self.streams = ReplicaStreams(self.seeds, device)
        self.lr, self.betas, self.checkpoint_every, self.clip_norm, self.threads = lr, betas, checkpoint_every, clip_norm, threads
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.state = LoopState()
        self.replicas = [Replica() for _ in range(R)]

    def start(self) -> None:
        """Stack every replicate (the subclass calls this once its models and data are set)."""
        self._activate(list(range(len(self.models))), self._stack(self.models, self.streams))

    # -- what a family says ----------------------------------------------------------
    def _stack(self, models: Sequence[torch.nn.Module], streams: ReplicaStreams) -> StackedModels:
        raise NotImplementedError

    def _capped(self) -> bool:
        raise NotImplementedError

    def _block(self, start: float) -> None:
        raise NotImplementedError

    def _result(self, r: int, resumed: bool) -> Any:
        raise NotImplementedError

    def _trainable(self, stack: StackedModels) -> list[torch.nn.Parameter]:
        """The stacked parameters the engine's optimiser moves (every one that requires a gradient)."""
        return [p for p in stack.parameters() if p.requires_grad]

    def _on_activate(self) -> None:
        """Called each time the batch changes (start, a replicate leaving, resume): per-batch tensors, plug-ins."""

    def _progress_units(self) -> tuple[int, int]:
        """(done, total) of the progress bar, in the family's units (steps, epochs)."""
        raise NotImplementedError

    def _progress_info(self) -> str:
        return f"{len(self.active)} of {len(self.models)} replicates training" if len(self.models) > 1 else ""

    def _tensor_state(self) -> dict:
        """More tensors for the checkpoint (a plug-in's optimisers)."""
        return {}

    def _meta_state(self) -> dict:
        """More JSON for the checkpoint."""
        return {}

    def _replica_state(self, r: int) -> dict:
        """More JSON for replicate ``r``'s entry of the checkpoint (a plug-in's state)."""
        return {}

    def _check_checkpoint(self, meta: dict) -> None:
        """Refuse a checkpoint this run cannot resume (raise :class:`~pyrovae.errors.DataError`)."""

    def _load_state(self, tensors: dict, meta: dict) -> None:
        """Inverse of :meth:`_tensor_state` and :meth:`_meta_state`, after the stack is restored."""

    # -- the batch of replicates still training ------------------------------------------
    def _activate(self, active: list[int], stack: StackedModels, optim_state: dict | None = None,
                  plugin_states: dict | None = None) -> None:
        self.active, self.stack = active, stack
        self.optim = self.optimizer(self._trainable(stack))
        if optim_state is not None:
            self.optim.load_state_dict(optim_state)
        self._plugin_optims: dict[str, ReplicateAdam] = {}
        self._plugin_states = dict(plugin_states or {})
        self._schedule: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler] | None = None
        self._diverged = torch.zeros(len(active), dtype=torch.bool, device=stack.device)
        self._on_activate()

    def optimizer(self, params) -> torch.optim.Optimizer:
        """The engine's optimiser (Adam at the engine's learning rate and β) over ``params``; plug-ins that step a
        subset of the parameters (M2's Lagging Inference Networks) build theirs here."""
        return adam(params, self.lr, self.betas)

    def lr_schedule(self, name: str | None, steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule ``name`` over ``steps`` steps (:func:`pyrovae.optim.lr_schedule`) of the
        engine's optimiser, at the loop's step count; the family steps it after each step. A schedule is a function
        of the step: when the batch changes (a replicate leaves, a run resumes) it is built again over the new
        optimiser and advanced to the step count. None without a schedule."""
        if name is None:
            return None
        if self._schedule is None or self._schedule[0] is not self.optim:
            scheduler = lr_schedule(self.optim, name, self.lr, steps)
            with warnings.catch_warnings():  # advancing it without optimiser steps is the point here
                warnings.simplefilter("ignore")
                for _ in range(self.state.step):
                    scheduler.step()
            self._schedule = (self.optim, scheduler)
        return self._schedule[1]

    def plugin_optimizer(self, name: str, params: Sequence[torch.nn.Parameter]) -> ReplicateAdam:
        """The batch's optimiser ``name`` over the stacked ``params``: a :class:`~pyrovae.optim.ReplicateAdam` at
        the engine's learning rate and β, so a plug-in may step some replicates and not others. Every replicate's
        plug-in gets the same object: the first call after the batch changed builds it (over the new stack,
        from the narrowed state), later calls return it. The engine narrows its state when replicates leave
        and keeps it in checkpoints."""
        if name not in self._plugin_optims:
            optimizer = ReplicateAdam(params, self.lr, self.betas)
            if name in self._plugin_states:
                optimizer.load_state_dict(self._plugin_states.pop(name))
            self._plugin_optims[name] = optimizer
        return self._plugin_optims[name]

    def step(self, loss_fn: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
             clip_norm: float | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step of every replicate still training on the losses ``(R,)`` that ``loss_fn`` computes;
        returns them (detached), NaN for a replicate whose loss or gradient is not finite (it gets no update,
        and the block's end stops it with the weights of its last good block).

        ``optimizer`` defaults to the engine's; a plug-in may pass its own (or several, stepped together)
        over a subset of the parameters. ``clip_norm`` overrides the engine's clipping of each replicate's
        gradient norm. ``mask`` ``(R,)``: only those replicates step and draw from their streams; the others
        stay exactly as they were (:meth:`plugin_optimizer`'s optimisers only), and their returned losses are
        placeholders, not theirs."""
        self.stack.zero_grad(set_to_none=True)
        with self.stack.streams.only(mask):
            losses = loss_fn()
        ok = step_replicates(losses, optimizer or self.optim, clip_norm if clip_norm is not None else self.clip_norm,
                             mask)
        self._diverged |= ~ok
        return torch.where(ok, losses.detach(), torch.full_like(losses.detach(), math.nan))

    def _finish(self, i: int, status: str) -> None:
        """Replicate ``active[i]`` stops with ``status``."""
        self.replicas[self.active[i]].status = status

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self.active) if self.replicas[r].status == "running"]
        if len(keep) == len(self.active):
            return
        if not keep:
            self.active = []
            return
        rows = torch.as_tensor(keep, device=self.stack.device)
        state = select_replicates(self.optim.state_dict(), rows)
        plugins = {name: select_replicates(opt.state_dict(), rows) for name, opt in self._plugin_optims.items()}
        self._activate([self.active[i] for i in keep], self.stack.select(keep), state, plugins)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> list:
        """Train until every replicate has stopped (its own decision, the cap, or NaN); one result per replicate."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        resumed = self.run_dir is not None and has_checkpoint(self.run_dir)
        if resumed:
            self._restore()
        s = self.state
        done, total = self._progress_units()
        bar = ProgressBar(total, done, self.progress, self.progress_label)
        start = time.perf_counter() - s.elapsed
        with bar:
            while self.active:
                if self._capped():
                    for i in range(len(self.active)):
                        self._finish(i, "max_steps")
                    break
                self._block(start)
                bar.update(self._progress_units()[0], self._progress_info())
                self._drop_finished()
                if self.active and s.block % self.checkpoint_every == 0:
                    self._save()
        s.elapsed = time.perf_counter() - start
        if any(rep.status != "nan" for rep in self.replicas):
            self._save()  # a run whose every replicate diverged keeps its last good checkpoint
        self._drop_finished()
        return [self._result(r, resumed) for r in range(len(self.models))]

    # -- checkpoints ----------------------------------------------------------------------
    def _save(self) -> None:
        if self.run_dir is None:
            return
        tensors = {"stack": self.stack.state_dict(), "optim": self.optim.state_dict(),
                   "plugin_optims": {name: opt.state_dict() for name, opt in self._plugin_optims.items()},
                   "streams": self.stack.streams.state(),
                   "models": {str(r): m.state_dict() for r, m in enumerate(self.models)}} | self._tensor_state()
        s = self.state
        meta = {"block": s.block, "step": s.step, "elapsed": s.elapsed, "active": self.active, "seeds": self.seeds,
                "device": self.stack.device.type,
                "replicas": [{"prev_loss": rep.prev_loss, "rows": rep.rows, "status": rep.status, "metrics": rep.metrics}
                             | self._replica_state(r) for r, rep in enumerate(self.replicas)]} | self._meta_state()
        save_checkpoint(self.run_dir, tensors, meta)

    def _restore(self) -> None:
        tensors, meta = load_checkpoint(self.run_dir, map_location=self.stack.device)
        if "stack" not in tensors or len(meta.get("replicas", [])) != len(self.models):
            raise DataError(f"{self.run_dir}/checkpoint was written by another version or for another number of "
                            "replicates; train into a new directory")
        if meta.get("device", self.stack.device.type) != self.stack.device.type:  # older checkpoints do not say
            raise DataError(f"{self.run_dir}/checkpoint was written on {meta['device']}: its random streams resume only "
                            f"there, not on {self.stack.device.type}; resume it there or train into a new directory")
        self._check_checkpoint(meta)
        for r, m in enumerate(self.models):
            m.load_state_dict(tensors["models"][str(r)])
        for rep, saved in zip(self.replicas, meta["replicas"]):
            rep.prev_loss, rep.rows, rep.status, rep.metrics = (saved["prev_loss"], list(saved["rows"]), saved["status"],
                                                                saved["metrics"])
        active = [int(r) for r in meta["active"]]
        for r in active:  # stopped by the cap at save time: a larger cap trains on
            if self.replicas[r].status == "max_steps":
                self.replicas[r].status = "running"
        if active:
            stack = self._stack([self.models[r] for r in active], self.streams.select(active))
            stack.load_state_dict(tensors["stack"])
            stack.streams.load_state(tensors["streams"])
            self._activate(active, stack, tensors["optim"], tensors.get("plugin_optims"))
        else:  # every replicate had finished: nothing left to train
            self.active = []
        self.state = LoopState(meta["block"], meta["step"], meta["elapsed"])
        self._load_state(tensors, meta)


class ProgressBar:
    """A rich progress bar with a line of information; silent when disabled."""

    def __init__(self, total: int, done: int, enabled: bool, label: str = "training"):
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), transient=False,
            )
            self.task = self.bar.add_task(label, total=total, completed=done, info="")

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def update(self, done: int, info: str) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=done, info=info)
