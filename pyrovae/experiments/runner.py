"""Running many trainings: a parallel map, configurations × paired repetitions, a progress bar."""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pyrovae.config import RunConfig
from pyrovae.runs import derive_seeds

__all__ = ["map_tasks", "run_grid", "set_aside_diverged", "progress_bar", "slug"]


def _call(fn: Callable[..., Any], kwargs: dict) -> Any:
    torch.set_num_threads(1)
    return fn(**kwargs)


def map_tasks(fn: Callable[..., Any], tasks: Sequence[dict], jobs: int = 1,
              on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(**t) for t in tasks]``, in ``jobs`` spawned processes when ``jobs > 1`` — ``fn`` must be
    importable at module level — in this process otherwise; one torch thread either way;
    results in task order; ``on_done(i, result)`` as each finishes."""
    results: list[Any] = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = _call(fn, task)  # one thread here too: the same numbers as with --jobs N
            if on_done is not None:
                on_done(i, results[i])
        return results
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_call, fn, dict(task)): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done is not None:
                on_done(i, results[i])
    return results


def _train_group(cfgs: list[dict], outs: list[str], batch_dir: str) -> list[dict]:
    from pyrovae.api import train_batch

    results = train_batch([RunConfig(**c) for c in cfgs], outs, batch_dir=batch_dir, plots=False)
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


def run_grid(
    configs: dict[str, RunConfig],
    reps: int,
    jobs: int,
    out: Path,
    root_seed: int = 0,
    on_done: Callable[[str, int, dict], None] | None = None,
    diverged: list[str] | None = None,
) -> dict[str, list[dict]]:
    """Train every ``configs[label]`` ``reps`` times; repetition ``i`` of every label uses the
    same seed (paired comparison). Each run writes ``out/<label>/rep-XX``; a finished run there is
    reused. The runs that differ only in per-replicate settings (seed, σ₀, C, calibration variant,
    schedule length: :data:`pyrovae.api.PER_REPLICATE`) train as one batched program; the
    batches are spread over ``jobs`` processes. Returns ``{label: [metrics of rep 0, rep 1, ...]}``;
    a diverged run's numbers are NaN and its name goes to ``diverged`` (:func:`set_aside_diverged`)."""
    from pyrovae.api import batch_key

    seeds = derive_seeds(root_seed, reps)
    results: dict[str, list[dict]] = {label: [{} for _ in range(reps)] for label in configs}

    def done(label: str, i: int, metrics: dict) -> None:
        results[label][i] = set_aside_diverged({"rep": i, "seed": seeds[i], **metrics}, f"{label}/rep-{i:02d}",
                                               diverged)
        if on_done is not None:
            on_done(label, i, results[label][i])

    groups: dict[str, list[tuple[str, int, RunConfig, Path]]] = {}
    for i in range(reps):
        for label, cfg in configs.items():
            cfg = cfg.replace(seed=seeds[i])
            run_dir = out / slug(label) / f"rep-{i:02d}"
            finished = _finished(cfg, run_dir)
            if finished is not None:
                done(label, i, finished)
            else:
                groups.setdefault(batch_key(cfg), []).append((label, i, cfg, run_dir))
    batches = list(groups.values())
    tasks = []
    for batch in batches:
        name = hashlib.sha1(json.dumps([[lab, i] for lab, i, _, _ in batch]).encode()).hexdigest()[:12]
        tasks.append({"cfgs": [c.to_dict() for _, _, c, _ in batch], "outs": [str(d) for _, _, _, d in batch],
                      "batch_dir": str(out / "batches" / name)})

    def batch_done(k: int, metrics: list[dict]) -> None:
        for (label, i, _, _), m in zip(batches[k], metrics):
            done(label, i, m)

    map_tasks(_train_group, tasks, jobs, on_done=batch_done)
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


class _Silent:
    task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, task, advance: float = 1) -> None:
        pass


def progress_bar(enabled: bool, total: int, label: str = "runs"):
    """A rich progress bar over ``total`` runs (``bar.advance(bar.task)``); silent when disabled."""
    if not enabled:
        return _Silent()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar.task = bar.add_task(label, total=total)
    return bar
