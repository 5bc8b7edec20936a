"""Full-protocol experiments on a lent GPU machine: one process per job, each resumable.

The replicate engine trains a whole cell of an experiment (all its seeds and σ₀) as one batch;
on a GPU a 256-replicate step costs 1.8 single steps (``benchmarks/README.md``), so a protocol
that needs hours of one CPU core fits in minutes. This script starts one of:

    python3 benchmarks/gpu_protocols.py calibration --variant robust --n 5000 --out OUT
    python3 benchmarks/gpu_protocols.py liu-table1 --jobs 4 --out OUT

* ``calibration``: the ``calibration-robustness`` sweep (10 seeds × 3 σ₀ per τ) for one variant,
  at ``--n`` points; each finished (variant, τ) cell is written to ``OUT/cells`` and reused;
  ``calibration-report`` then tabulates every variant's cells (``report.md``, heat map).
* ``liu-table1``: ``pyrovae experiment run liu-table1`` at its paper protocol (20 repetitions,
  σ₀ ∈ {0.2, …, 1.0}, 40,000-step cap), its batches on ``--device``; finished runs are reused.

Experiments take no ``--device`` of their own yet (the issue on Pyro and ArviZ users' needs,
item 6), so this script sets the device of the table's run configurations itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def calibration(args: argparse.Namespace) -> None:
    from pyrovae.experiments import calibration_robustness as cr

    settings = cr.SweepSettings(quick=False, reps=10, root_seed=0, n=args.n, device=args.device)
    if args.max_steps is not None:  # a smoke test
        settings.max_steps = settings.oracle_steps = args.max_steps
    cr.sweep(Path(args.out), settings, variants=(args.variant,),
             on_cell=lambda v, t: print(f"cell {v} τ={t:g} done", flush=True))


def calibration_report(args: argparse.Namespace) -> None:
    """The sweep's table and heat map from the cells every variant's process wrote."""
    from pyrovae.experiments import calibration_robustness as cr

    report = cr.report(cr.SweepSettings(quick=False, reps=10, root_seed=0, n=args.n, device=args.device),
                       Path(args.out))
    report.write(Path(args.out))
    print(report.to_markdown(), flush=True)


def liu_table1(args: argparse.Namespace) -> None:
    from pyrovae.experiments import liu2025
    from pyrovae.experiments.registry import ExperimentOptions

    paper_base = liu2025._base
    liu2025._base = lambda max_steps: paper_base(args.max_steps or max_steps).replace(device=args.device)
    options = ExperimentOptions(out=Path(args.out), quick=args.quick, jobs=args.jobs, reps=args.reps)
    report = liu2025.table1(options)
    report.write(Path(args.out))
    print(report.to_markdown(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["calibration", "calibration-report", "liu-table1"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variant", default="robust")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run (a smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"calibration": calibration, "calibration-report": calibration_report, "liu-table1": liu_table1}[args.what](args)


if __name__ == "__main__":
    main()
