"""Running many tasks: a parallel map whose finished tasks are kept on disk, configurations ×
paired repetitions, progress that reads well on a terminal and in a log file."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pyrovae.config import RunConfig
from pyrovae.executors import InProcess
from pyrovae.runs import derive_seeds

if TYPE_CHECKING:
    from pyrovae.experiments.registry import ExperimentOptions

__all__ = ["map_tasks", "run_grid", "set_aside_diverged", "Progress", "slug"]


def map_tasks(fn: Callable[..., Any], tasks: Sequence[dict], options: "ExperimentOptions | None" = None,
              on_done: Callable[[int, Any], None] | None = None, label: str | None = None) -> list[Any]:
    """``[fn(**t) for t in tasks]`` on the experiment's executor (``options.executor``: this process,
    local processes or a Dask cluster; ``fn`` must be importable at module level), results in task
    order, ``on_done(i, result)`` as each one is ready.

    With ``options``, each task's result is written to ``options.out/tasks`` as it finishes
    (:class:`~pyrovae.experiments.task_store.TaskStore`) and a rerun reuses it instead of running
    the task again; each task's own wall time goes to ``options.task_seconds`` (reused ones with the
    time they took when they ran) and the commit that computed it to ``options.task_commits``; with ``options.progress``, one line per finished task
    (:class:`Progress`); with ``options.stored_only``, a task not stored raises :class:`~pyrovae.errors.ConfigError`
    instead of running. Without ``options``: in this process, nothing kept."""
    from pyrovae.experiments.task_store import TaskStore

    tasks = list(tasks)
    store = TaskStore(Path(options.out) / "tasks") if options is not None else None
    results: list[Any] = [None] * len(tasks)

    def finish(i: int, result: Any, seconds: float, reused: bool, commit: str) -> None:
        results[i] = result
        if options is not None:
            options.task_seconds.append((seconds, reused))
            options.task_commits[commit] = options.task_commits.get(commit, 0) + 1
        if on_done is not None:
            on_done(i, result)

    pending = []
    for i, task in enumerate(tasks):
        stored = store.load(fn, task) if store is not None else None
        if stored is None:
            pending.append(i)
        else:
            finish(i, stored.result, stored.seconds, True, stored.commit)
    label = label or fn.__name__.strip("_")
    if options is not None and options.stored_only and pending:
        from pyrovae.errors import ConfigError

        raise ConfigError(f"--stored-only: {len(pending)} of {len(tasks)} tasks ({label}) are not stored in "
                          f"{store.directory}; run the command without --stored-only to compute them")
    executor = options.executor if options is not None else InProcess()
    enabled = options is not None and options.progress
    with Progress(enabled, len(tasks), label, reused=len(tasks) - len(pending)) as bar:
        for done in executor.run(fn, [tasks[i] for i in pending]):
            i = pending[done.index]
            saved = store.save(fn, tasks[i], done.result, done.seconds) if store is not None else None
            finish(i, saved.result if saved else done.result, done.seconds, False, saved.commit if saved else "unknown")
            bar.advance()
    return results


def _train_group(cfgs: list[dict], outs: list[str], batch_dir: str) -> list[dict]:
    """Train one batch of :func:`run_grid` (:func:`pyrovae.api.train_batch`); a batch whose runs
    all finished already (their directories say so) is read back, not trained."""
    from pyrovae.api import train_batch

    configs = [RunConfig(**c) for c in cfgs]
    finished = [_finished(cfg, Path(out)) for cfg, out in zip(configs, outs)]
    if all(m is not None for m in finished):
        return finished
    results = train_batch(configs, outs, batch_dir=batch_dir, plots=False)
    return [r.metrics for r in results]


def _finished(cfg: RunConfig, out: Path) -> dict | None:
    """The metrics of a finished run of ``cfg`` in ``out``, or None."""
    from pyrovae.runs import read_json

    if not (out / "metrics.json").is_file() or not (out / "config.json").is_file():
        return None
    if read_json(out / "config.json") != _as_json(cfg):
        return None
    metrics = read_json(out / "metrics.json")
    return metrics if metrics.get("status") in ("converged", "max_steps", "nan") else None


def _as_json(cfg: RunConfig) -> dict:
    """``cfg`` as its ``config.json`` reads back (tuples become lists)."""
    return json.loads(json.dumps(cfg.to_dict()))


def run_grid(configs: dict[str, RunConfig], reps: int, options: "ExperimentOptions", out: Path,
             alone: bool = False) -> dict[str, list[dict]]:
    """Train every ``configs[label]`` ``reps`` times on ``options.device``; repetition ``i`` of every
    label uses the same seed, derived from ``options.seed`` (paired comparison). Each run writes
    ``out/<label>/rep-XX``. The runs that differ only in per-replicate settings (seed, σ₀, C,
    calibration variant, schedule length: :data:`pyrovae.api.PER_REPLICATE`) train as one batched
    program, one task of :func:`map_tasks` each (kept on disk as it finishes, reused on rerun,
    spread over the experiment's executor); with ``alone`` every run trains on its own, for a table of
    wall times (a batch's replicates share its clock, so a replicate's time would be the batch's). Returns ``{label: [metrics of rep 0, rep 1, ...]}``; a
    diverged run's numbers are NaN and its name goes to ``options.diverged`` (:func:`set_aside_diverged`)."""
    from pyrovae.api import batch_key

    seeds = derive_seeds(options.seed, reps)
    groups: dict[str, list[tuple[str, int, RunConfig, Path]]] = {}
    for i in range(reps):
        for label, cfg in configs.items():
            cfg = cfg.replace(seed=seeds[i], device=options.device)
            key = json.dumps([label, i]) if alone else batch_key(cfg)
            groups.setdefault(key, []).append((label, i, cfg, out / slug(label) / f"rep-{i:02d}"))
    batches = list(groups.values())
    tasks = []
    for batch in batches:
        name = hashlib.sha1(json.dumps([[lab, i] for lab, i, _, _ in batch]).encode()).hexdigest()[:12]
        tasks.append({"cfgs": [c.to_dict() for _, _, c, _ in batch], "outs": [str(d) for _, _, _, d in batch],
                      "batch_dir": str(out / "batches" / name)})
    results: dict[str, list[dict]] = {label: [{} for _ in range(reps)] for label in configs}
    for batch, metrics in zip(batches, map_tasks(_train_group, tasks, options, label="batches")):
        for (label, i, _, _), m in zip(batch, metrics):
            results[label][i] = set_aside_diverged({"rep": i, "seed": seeds[i], **m}, f"{label}/rep-{i:02d}",
                                                   options.diverged)
    return results


def set_aside_diverged(run: dict, name: str, diverged: list[str] | None) -> dict:
    """A run whose training diverged (status ``nan``) keeps its status but its numbers — and the
    numbers it has none of (``None``: it diverged before its first block) — become NaN, so no summary
    averages them and arithmetic on them stays defined; its ``name`` is added to ``diverged``."""
    if run.get("status") != "nan":
        return run
    if diverged is not None:
        diverged.append(name)
    keep = ("status", "rep", "seed", "label", "method", "kind", "index", "init", "restart", "steps")
    return {k: (math.nan if k not in keep and (v is None or isinstance(v, float)) else v) for k, v in run.items()}


def slug(label: str) -> str:
    """A directory name for a configuration label."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in label)


class Progress:
    """Progress over ``total`` tasks, ``reused`` of them already done by an earlier run: a rich bar
    on a terminal; elsewhere (a log file, a pipe) one plain line per finished task with the count,
    the elapsed time and an estimate of the time left (from the pace of the tasks run so far);
    nothing when not ``enabled``. Call :meth:`advance` as each task finishes."""

    def __init__(self, enabled: bool, total: int, label: str = "tasks", reused: int = 0) -> None:
        self.enabled, self.total, self.label, self.reused = enabled, total, label, reused
        self.done = reused
        self._bar = None

    def __enter__(self) -> "Progress":
        if not self.enabled or self.total == 0:
            return self
        self._start = time.perf_counter()
        if sys.stdout.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Bar(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn())
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.reused)
            self._bar.start()
        elif self.reused:
            self._line(f"{self.reused} finished by an earlier run, reused")
        return self

    def advance(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.advance(self._task)
            return
        elapsed = time.perf_counter() - self._start
        left = (self.total - self.done) * elapsed / (self.done - self.reused)
        self._line(f"{_clock(elapsed)} elapsed, about {_clock(left)} left")

    def _line(self, text: str) -> None:
        print(f"{self.label} {self.done}/{self.total}: {text}", flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def _clock(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
