"""What evaluating a batch of replicates in chunks of points saves at the end of every block.

After each block the engine evaluates every replicate on all its training points
(:meth:`pyrovae.inference.replicates.ReplicatedCVAE.terms`: the history's reconstruction, KL and
residual MSE, which also sets an analytic σ). With mini-batches that pass is as large as the whole
block's training: Yacoby, Pan & Doshi-Velez (2021)'s protocol trains 50 replicates on 5,000 points
in blocks of 50 batches of 100, and a profile of `yacoby-appendix-e2 --full` put 42 % of its time in
this pass. This script times the pass at one chunk (all R × n rows at once) against the engine's
chunks (``_EVAL_NUMBERS`` numbers per layer), in one process with alternating rounds (ABBA), and checks that both
give the same numbers.

Usage::

    .venv/bin/python benchmarks/block_evaluation.py                      # R = 50, n = 5,000, 3 x 50 leaky ReLU
    .venv/bin/python benchmarks/block_evaluation.py --reps 30 --n 1000 --widths 16 8 4 2 --activation tanh

The last line reads ``speedup of chunked evaluation: X`` (one pass ÷ chunks, medians).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from pyrovae.inference import replicates
from pyrovae.inference.replicates import ReplicaStreams, ReplicatedCVAE
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import make_noise


def timed(stack: ReplicatedCVAE, condition: torch.Tensor, observed: torch.Tensor, numbers: int) -> tuple[float, dict]:
    replicates._EVAL_NUMBERS = numbers
    start = time.perf_counter()
    terms = stack.terms(condition, observed)
    return time.perf_counter() - start, terms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--widths", type=int, nargs="+", default=[50, 50, 50])
    parser.add_argument("--activation", default="leaky_relu")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    budget = replicates._EVAL_NUMBERS
    models = []
    for r in range(args.reps):
        pyro.set_rng_seed(r)
        models.append(SigmaCVAE(0, 2, 1, args.widths, args.widths, noise=make_noise("fixed", 0.1),
                                activation=args.activation))
    condition, observed = torch.zeros(args.n, 0), torch.randn(args.n, 2, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"one pass": [], "chunks": []}
    for i in range(args.rounds):
        order = [("one pass", 2**62), ("chunks", budget)]
        for name, numbers in (order if i % 2 == 0 else order[::-1]):
            stack = ReplicatedCVAE.stack(models, ReplicaStreams(list(range(args.reps))))  # same draws each time
            seconds, terms = timed(stack, condition, observed, numbers)
            times[name].append(seconds)
            if name == "one pass":
                reference = terms
            else:
                chunked = terms
        if i == 0:
            same = all(torch.allclose(reference[k], chunked[k], rtol=1e-6, atol=1e-6) for k in reference)
            exact = all(torch.equal(reference[k], chunked[k]) for k in reference)
    replicates._EVAL_NUMBERS = budget
    median = {k: statistics.median(v) for k, v in times.items()}
    size = max(1, budget // (args.reps * stack._widest))
    print(f"R = {args.reps}, n = {args.n}, widths {args.widths}, chunks of {min(size, args.n)} points")
    for name, value in median.items():
        print(f"{name:>9}: {1000 * value:8.1f} ms (median of {args.rounds})")
    print(f"same numbers: {'bit for bit' if exact else 'to 1e-6' if same else 'NO'}")
    print(f"speedup of chunked evaluation: {median['one pass'] / median['chunks']:.2f}")


if __name__ == "__main__":
    main()
