"""What training R M2 models as one batch saves over R single runs (Yacoby, Pan & Doshi-Velez 2021, App. D).

The semi-circle setting of ``yacoby-m2``: 5,000 points (10 % labelled), three layers of 50, latent 1,
batches of 100. For each objective (ELBO with the exact sum over a discrete y; IWAE with S = 10) and
replicate count R (and, with ``--objectives lin``, Lagging Inference Networks' first, aggressive epoch, in
which each model runs encoder-only inner loops of its own length), times one epoch of :func:`pyrovae.inference.m2_training.train_m2_batch` for R
models against one epoch of one model, alternating in ONE process (ABBA order) so load from other
processes falls on both alike. ``speedup`` is R × (one model's epoch) ÷ (the R-model epoch).

Usage::

    .venv/bin/python benchmarks/m2_replicates.py                 # R = 1, 10, 40
    .venv/bin/python benchmarks/m2_replicates.py --reps 10 --rounds 2
    .venv/bin/python benchmarks/m2_replicates.py --objectives lin --reps 10 --rounds 1

The last line reads ``speedup R=10 iwae: X`` (the last objective and R asked for).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyrovae.data.yacoby_m2 import discrete_semicircle
from pyrovae.inference.m2_training import train_m2_batch
from pyrovae.models.m2 import M2


def epoch_seconds(R: int, objective: str, data) -> float:
    models = []
    for r in range(R):
        torch.manual_seed(r)
        models.append(M2(2, "discrete", latent_dim=1, widths=(50, 50, 50), sigma=0.1))
    start = time.perf_counter()
    train_m2_batch(models, data, "elbo" if objective == "lin" else objective, epochs=1, batch_size=100, particles=10,
                   seeds=list(range(R)), lagging=objective == "lin")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, nargs="+", default=[1, 10, 40])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--objectives", nargs="+", default=["elbo", "iwae"], choices=["elbo", "iwae", "lin"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = discrete_semicircle(n=args.n, seed=0)
    epoch_seconds(1, "elbo", data)  # warm-up
    print(f"M2 semi-circle, n = {args.n}, batches of 100; seconds per epoch (median of {args.rounds} ABBA rounds)")
    print(f"{'objective':>9} {'R':>4} {'one model':>10} {'R models':>9} {'speedup':>8}")
    last = None
    for objective in args.objectives:
        for R in args.reps:
            one, many = [], []
            for i in range(args.rounds):
                pair = [(one, 1), (many, R)] if i % 2 == 0 else [(many, R), (one, 1)]
                for out, reps in pair:
                    out.append(epoch_seconds(reps, objective, data))
            t1, tR = statistics.median(one), statistics.median(many)
            print(f"{objective:>9} {R:>4} {t1:>10.3f} {tR:>9.3f} {R * t1 / tR:>8.1f}")
            last = (R, objective, R * t1 / tR)
    print(f"speedup R={last[0]} {last[1]}: {last[2]:.1f}")


if __name__ == "__main__":
    main()
