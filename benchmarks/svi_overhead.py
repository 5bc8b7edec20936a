"""Overhead of one library training step against a hand-written PyTorch step.

Times :meth:`pyrovae.inference.trainer.Trainer.step` (the Pyro program of
:class:`~pyrovae.models.cvae.SigmaCVAE` under a Pyro ELBO, ``backward``, Adam: the code
path every training run takes) against a plain PyTorch loop that computes the same
negative ELBO estimator with the same networks (a copy of the same ``SigmaCVAE``, so the
same encoder, decoder and learned σ, starting from the same weights), the same Adam
optimiser and learning rate, on the same full batch of 5,000 two-moon points, with
``torch.set_num_threads(1)``.

The two are timed in ONE process, in alternating rounds (ABBA order: neither always
runs first), so load from other processes on the machine affects both alike. Prints the
median ms per step of each (wall clock and CPU time), the ratio of those medians, and
``ratio = ...``: the median over rounds of library / hand-written, each pair of rounds
timed back to back (the estimate least moved by load that drifts during the run).
Before timing, it checks that both compute the same loss from the same weights and draw.

Usage::

    .venv/bin/python benchmarks/svi_overhead.py                 # ELBO 'trace' (the default)
    .venv/bin/python benchmarks/svi_overhead.py --elbo meanfield
    .venv/bin/python benchmarks/svi_overhead.py --rounds 60 --steps 10 --n 5000
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time

import pyro
import torch

from pyrovae.data import two_moon
from pyrovae.inference.algorithms import JointSVI
from pyrovae.inference.replicates import ReplicaStreams, ReplicatedCVAE, replicate_loss
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.optim import adam

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def hand_written_loss(model: SigmaCVAE, x: torch.Tensor, y: torch.Tensor, elbo: str) -> torch.Tensor:
    """The negative ELBO of the σ-CVAE written directly in PyTorch, summed over points.

    ``trace``: one reparameterised ``z = loc + scale * eps`` per point and the Monte-Carlo
    ``-(log p(z) + log p(y | x, z) - log q(z | x, y))`` (what ``Trace_ELBO`` estimates;
    ``log q`` uses ``eps`` directly, as a hand-written loop would); ``meanfield``: the same
    reconstruction term with the analytic Gaussian KL (what ``TraceMeanField_ELBO`` computes).
    """
    loc, scale = model.encode(x, y)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    mean = model.decode(x, z)
    sigma = model.noise.scale(mean)
    log_py = (-0.5 * ((y - mean) / sigma).pow(2) - sigma.log() - HALF_LOG_2PI).sum()
    if elbo == "meanfield":
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum()
    else:  # log q(z) - log p(z) at z = loc + scale * eps
        kl = (0.5 * (z.pow(2) - eps.pow(2)) - scale.log()).sum()
    return kl - log_py


def hand_written_step(model: SigmaCVAE, optim: torch.optim.Optimizer, elbo: str):
    """One plain PyTorch optimiser step; returns the mean per-sample loss, as ``Trainer.step``."""

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        optim.zero_grad(set_to_none=True)
        loss = hand_written_loss(model, x, y, elbo)
        value = float(loss.detach()) / x.shape[0]
        loss.backward()
        optim.step()
        return value

    return step


def check_same_loss(trainer: Trainer, model: SigmaCVAE, x: torch.Tensor, y: torch.Tensor, elbo: str):
    """Both losses from the same weights and the same random draw: they must agree. The engine's
    draw comes from a stream seeded 123; the hand-written one from torch's generator seeded 123."""
    with torch.no_grad():
        stack = ReplicatedCVAE.stack([trainer.model], ReplicaStreams([123]))
        with pyro.validation_enabled(False):
            lib = float(replicate_loss(stack, x, y, None, elbo).sum())
        torch.manual_seed(123)
        hand = float(hand_written_loss(model, x, y, elbo))
    if not math.isclose(lib, hand, rel_tol=1e-4):
        raise AssertionError(f"the two steps compute different losses: library {lib}, hand-written {hand}")
    return lib / x.shape[0], hand / x.shape[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elbo", default="trace", choices=["trace", "meanfield"])
    parser.add_argument("--n", type=int, default=5000, help="two-moon points (full batch)")
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds per variant, alternating")
    parser.add_argument("--steps", type=int, default=8, help="steps per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = two_moon(args.n, seed=args.seed)
    x, y = data.condition, data.observed

    lib_model = SigmaCVAE(data.condition_dim, data.observed_dim)
    hand_model = copy.deepcopy(lib_model)  # same modules, same initial weights
    settings = TrainSettings(elbo=args.elbo)
    trainer = Trainer(lib_model, data, JointSVI(), settings)
    hand_optim = adam(hand_model.parameters(), settings.lr)  # the engine's optimiser (fused Adam)

    same = check_same_loss(trainer, hand_model, x, y, args.elbo)
    variants = {
        "library": lambda xb, yb: float(trainer.step(xb, yb)),
        "hand-written": hand_written_step(hand_model, hand_optim, args.elbo),
    }
    losses = {}
    for name, step in variants.items():
        for _ in range(args.warmup):
            losses[name] = step(x, y)

    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:  # ABBA: neither always goes first
            step = variants[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                losses[name] = step(x, y)
            cpu[name].append((time.process_time() - start_cpu) / args.steps * 1e3)
            wall[name].append((time.perf_counter() - start) / args.steps * 1e3)

    med = {name: statistics.median(wall[name]) for name in variants}
    med_cpu = {name: statistics.median(cpu[name]) for name in variants}
    per_round = statistics.median(a / b for a, b in zip(wall["library"], wall["hand-written"]))
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, threads {torch.get_num_threads()}, n = {args.n}, "
          f"ELBO {args.elbo!r}, {args.rounds} alternating rounds x {args.steps} steps each")
    for name in variants:
        t = wall[name]
        print(f"{name:>13}: {med[name]:7.3f} ms/step wall (median; min {min(t):.3f}, max {max(t):.3f}), "
              f"{med_cpu[name]:7.3f} ms/step CPU; last loss {losses[name]:.4f}")
    print(f"same weights, same draw: loss per point {same[0]:.6f} (library) vs {same[1]:.6f} (hand-written)")
    print(f"ratio of the medians = {med['library'] / med['hand-written']:.3f}; "
          f"CPU-time ratio = {med_cpu['library'] / med_cpu['hand-written']:.3f}")
    print(f"ratio = {per_round:.3f}  (median over rounds of library / hand-written, each pair timed back to back)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
