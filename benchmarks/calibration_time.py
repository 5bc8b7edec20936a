"""Wall time of one calibrated σ-CVAE run: the robust variant (ours) against Algorithm 1 of Liu & Wang (2025).

The goal of the robust variant (issue "The calibrated σ-CVAE must recover σ at every noise
level") includes: wall time per run no more than 1.5× the paper variant's median at τ = 0.1.
This script trains, at the demo's setting (``pyrovae demo``'s ``DEMO_SETTINGS``: two-moon,
n = 5,000, τ = 0.1, σ₀ = 1, K = 25, C = 0.05, Adam lr 0.005, full batch), one single run per seed and variant,
through :func:`pyrovae.api.train` (the code path of ``pyrovae train``), and times each with
``time.perf_counter`` around the whole call, the robust variant's importance-weighted polish and
final σ included. Both variants run in ONE process, alternating which goes first from seed to
seed, so load from other processes falls on both alike. Seeds come from ``--seed`` as in
``pyrovae train --reps``.

Usage::

    .venv/bin/python benchmarks/calibration_time.py                 # 10 seeds, τ = 0.1
    .venv/bin/python benchmarks/calibration_time.py --seeds 3 --tau 0.05

It prints one row per run and then the medians; the last line reads
``ratio robust/paper at τ=0.1: X`` (median robust wall time ÷ median paper wall time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyrovae.api import train
from pyrovae.cli.demo import DEMO_SETTINGS
from pyrovae.config import RunConfig
from pyrovae.runs import derive_seeds

VARIANTS = ("paper", "robust")


def timed_run(variant: str, seed: int, tau: float, max_steps: int) -> dict:
    cfg = RunConfig(**{**DEMO_SETTINGS, "calibration": variant, "tau": tau}, seed=seed, max_steps=max_steps)
    start = time.perf_counter()
    result = train(cfg, plots=False)
    wall = time.perf_counter() - start
    m = result.metrics
    return {"variant": variant, "seed": seed, "wall": wall, "steps": m["steps"], "status": result.status,
            "sigma": m["sigma"], "rel_err": m["sigma_rel_err"], "polish_steps": m.get("polish_steps", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="runs per variant")
    parser.add_argument("--seed", type=int, default=0, help="root seed (seeds derived as pyrovae train --reps)")
    parser.add_argument("--tau", type=float, default=0.1, help="true noise σ of the two-moon data")
    parser.add_argument("--max-steps", type=int, default=30_000, help="step cap of every run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'variant':>8} {'seed':>20} {'wall s':>8} {'steps':>6} {'polish':>6} {'status':>10} {'σ':>8} {'rel err':>8}")
    for i, seed in enumerate(derive_seeds(args.seed, args.seeds)):
        for variant in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
            row = timed_run(variant, seed, args.tau, args.max_steps)
            rows.append(row)
            print(f"{variant:>8} {seed:>20} {row['wall']:8.1f} {row['steps']:6d} {row['polish_steps']:6d} "
                  f"{row['status']:>10} {row['sigma']:8.4f} {row['rel_err']:8.3f}", flush=True)
    median = {v: statistics.median(r["wall"] for r in rows if r["variant"] == v) for v in VARIANTS}
    steps = {v: statistics.median(r["steps"] for r in rows if r["variant"] == v) for v in VARIANTS}
    for v in VARIANTS:
        print(f"median {v}: {median[v]:.1f} s, {steps[v]:.0f} steps")
    print(f"ratio robust/paper at τ={args.tau:g}: {median['robust'] / median['paper']:.2f}")


if __name__ == "__main__":
    main()
