"""Running many trainings: a parallel map, configurations × paired repetitions, a progress bar."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pyrovae.config import RunConfig
from pyrovae.runs import derive_seeds

__all__ = ["map_tasks", "run_grid", "progress_bar", "slug"]


def _call(fn: Callable[..., Any], kwargs: dict) -> Any:
    torch.set_num_threads(1)
    return fn(**kwargs)


def map_tasks(fn: Callable[..., Any], tasks: Sequence[dict], jobs: int = 1,
              on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(**t) for t in tasks]``, in ``jobs`` spawned processes (one torch thread each) when
    ``jobs > 1`` — ``fn`` must be importable at module level — in this process otherwise;
    results in task order; ``on_done(i, result)`` as each finishes."""
    results: list[Any] = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = fn(**task)
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


def _train_one(cfg: dict, out: str) -> dict:
    from pyrovae.api import train

    return train(RunConfig(**cfg), out=out, progress=False, plots=False).metrics


def run_grid(
    configs: dict[str, RunConfig],
    reps: int,
    jobs: int,
    out: Path,
    root_seed: int = 0,
    on_done: Callable[[str, int, dict], None] | None = None,
) -> dict[str, list[dict]]:
    """Train every ``configs[label]`` ``reps`` times; repetition ``i`` of every label uses the
    same seed (paired comparison). Each run writes ``out/<label>/rep-XX`` and resumes if there.
    Returns ``{label: [metrics of rep 0, rep 1, ...]}``."""
    seeds = derive_seeds(root_seed, reps)
    keys = [(label, i) for i in range(reps) for label in configs]
    tasks = [{"cfg": configs[label].replace(seed=seeds[i]).to_dict(), "out": str(out / slug(label) / f"rep-{i:02d}")}
             for label, i in keys]
    results: dict[str, list[dict]] = {label: [{} for _ in range(reps)] for label in configs}

    def done(k: int, metrics: dict) -> None:
        label, i = keys[k]
        results[label][i] = {"rep": i, "seed": seeds[i], **metrics}
        if on_done is not None:
            on_done(label, i, results[label][i])

    map_tasks(_train_one, tasks, jobs, on_done=done)
    return results


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
