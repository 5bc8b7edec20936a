"""What training R replicates as one batched program saves over R single runs.

For each data size n and replicate count R, times one step of the engine
(:meth:`pyrovae.inference.trainer.Trainer.step`: the batched Pyro program of R two-moon
σ-CVAEs with Appendix F's networks and a learned σ, ``backward``, Adam) against one step of a
single run (the same engine at R = 1), in ONE process with alternating rounds (ABBA order), so
load from other processes falls on both alike. ``speedup`` is R × (single step) ÷ (R-replicate
step): how many times faster R runs go as one batch than one after another.

Usage::

    .venv/bin/python benchmarks/replicates.py                  # R = 1, 4, 16, 32, 64; n = 100, 500, 5000
    .venv/bin/python benchmarks/replicates.py --device cuda --reps 1 64 256 --sizes 5000

The last line reads ``speedup R=32 n=500: X``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from pyrovae.data import two_moon
from pyrovae.inference.algorithms import JointSVI
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import LearnedNoise


def make_trainer(R: int, n: int, device: str) -> Trainer:
    data = two_moon(n=n, tau=0.1, seed=0)
    models = []
    for r in range(R):
        pyro.set_rng_seed(r)
        models.append(SigmaCVAE(1, 2, noise=LearnedNoise(1.0)).to(device))
    return Trainer(models, data, JointSVI(), TrainSettings(K=25), seeds=list(range(R)))


def time_steps(trainer: Trainer, steps: int, device: str) -> float:
    """Seconds per step over ``steps`` steps."""
    x, y = trainer.batch()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(x, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(R: int, n: int, rounds: int, steps: int, device: str) -> tuple[float, float]:
    """Median seconds per step of a single run and of an R-replicate batch, interleaved."""
    single, batch = make_trainer(1, n, device), make_trainer(R, n, device)
    time_steps(single, 3, device), time_steps(batch, 3, device)  # warm-up
    t1, tR = [], []
    for k in range(rounds):
        order = (single, batch) if k % 2 == 0 else (batch, single)
        for trainer in order:
            (t1 if trainer is single else tR).append(time_steps(trainer, steps, device))
    return statistics.median(t1), statistics.median(tR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 5000])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    print(f"device {args.device}, {args.threads} thread(s); ms per step (median of {args.rounds} rounds)")
    print(f"{'n':>6} {'R':>4} {'single':>9} {'batch':>9} {'per replicate':>14} {'speedup':>8}")
    results = {}
    with pyro.validation_enabled(False):
        for n in args.sizes:
            for R in args.reps:
                t1, tR = measure(R, n, args.rounds, args.steps, args.device)
                results[(R, n)] = R * t1 / tR
                print(f"{n:>6} {R:>4} {t1 * 1e3:>9.2f} {tR * 1e3:>9.2f} {tR / R * 1e3:>14.3f} {R * t1 / tR:>8.1f}",
                      flush=True)
    key = (32, 500)
    if key not in results:
        results[key] = (lambda t: 32 * t[0] / t[1])(measure(32, 500, args.rounds, args.steps, args.device))
    print(f"speedup R=32 n=500: {results[key]:.1f}")


if __name__ == "__main__":
    main()
