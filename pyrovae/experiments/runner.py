"""Run many training configurations × repetitions in parallel processes, paired by seed."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from pyrovae.config import RunConfig
from pyrovae.runs import derive_seeds

__all__ = ["run_grid"]


def _worker(cfg_dict: dict, out: str) -> dict:
    from pyrovae.api import train

    return train(RunConfig(**cfg_dict), out=out, progress=False, plots=False).metrics


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
    results: dict[str, list[dict]] = {label: [{} for _ in range(reps)] for label in configs}
    tasks = [(label, i) for i in range(reps) for label in configs]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(_worker, configs[label].replace(seed=seeds[i]).to_dict(), str(out / _slug(label) / f"rep-{i:02d}")):
            (label, i)
            for label, i in tasks
        }
        for future in as_completed(futures):
            label, i = futures[future]
            results[label][i] = {"rep": i, "seed": seeds[i], **future.result()}
            if on_done is not None:
                on_done(label, i, results[label][i])
    return results


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in label)
