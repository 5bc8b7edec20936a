"""One experiment's repetitions cell by cell against one batch: a method of LiBI Table 1
(Yacoby, Pan & Doshi-Velez 2020; ``--method``: the VAE baseline by default, LiBI itself, or He et al.'s
Lagging Inference Networks, whose replicates each run inner loops of their own length) on
LinearJTEx at the quick setting (3,000 steps, n = 500), evaluation included (a smaller
importance-sampling S and kNN repeat count than the table's, to keep the run short; both paths
use the same).

Prints, per round, the wall time of ``reps`` cells trained one after another
(``_table1_cell``) and as one batch of replicates (``_table1_cells``), their ratio, and each
cell's Test-LL from both paths (equal to rounding: the batch changes no number).

Usage::

    .venv/bin/python benchmarks/batched_cells.py --reps 5 --rounds 2
    .venv/bin/python benchmarks/batched_cells.py --method LiBI --reps 5 --rounds 1
    .venv/bin/python benchmarks/batched_cells.py --method "Lagging (He et al.)" --reps 5 --rounds 1
"""

from __future__ import annotations

import argparse
import time

import torch

from pyrovae.papers.yacoby_2020_libi.table1 import TABLE1_QUICK, _table1_cell, _table1_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--method", default="VAE", choices=["VAE", "LiBI", "Lagging (He et al.)"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = dict(TABLE1_QUICK, data_seed=0, knn_repeats=20, S=200)
    cells = list(range(args.reps))
    for k in range(args.rounds):
        start = time.perf_counter()
        alone = [_table1_cell(args.method, "linear-jtex", i, i, cfg) for i in cells]
        t_alone = time.perf_counter() - start
        start = time.perf_counter()
        batch = _table1_cells(args.method, "linear-jtex", cells, cells, cfg)
        t_batch = time.perf_counter() - start
        print(f"round {k} ({args.method}): {args.reps} cells one by one {t_alone:.1f} s, as one batch {t_batch:.1f} s")
        print(f"  Test-LL one by one {[round(c['ll'], 4) for c in alone]}")
        print(f"  Test-LL batched    {[round(c['ll'], 4) for c in batch]}")
        print(f"ratio one-by-one / batch: {t_alone / t_batch:.2f}")


if __name__ == "__main__":
    main()
