"""The robust variant's ``first_probes`` rule, measured: ``first_probes = 1`` (a run stops at its first
failed probe, the rule before 2026-11-30) against ``2`` (a first plateau no probe has improved needs two
failed probes, the default since), on the robust cells of ``calibration-robustness``.

Each (τ, rule) is one cell of the sweep (:func:`pyrovae.papers.liu_wang_2025.calibration_robustness.train_cell`:
two-moon at n points, 10 seeds from root seed 0 × σ₀ ∈ {0.2, 1, 5}, K = 25, a 3,000-step cap, the 30
replicates as one batch) with the robust variant's settings changed only in ``first_probes``. Results go
to OUT (JSON, one entry per cell, reused on a rerun); one summary line per cell is printed, then every run
whose outcome the rule changed (its steps, or its error by more than 1e-4: the others differ only in float
rounding, since the replicates that share a batch change as runs finish).

Usage::

    .venv/bin/python benchmarks/robust_first_probes.py OUT.json --taus 0.5 0.3 0.2 0.1 --n 1000
    .venv/bin/python benchmarks/robust_first_probes.py OUT.json --taus 0.5 --n 5000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pyrovae.inference.robust_calibration import RobustSettings
from pyrovae.papers.liu_wang_2025 import calibration_robustness as sweep
from pyrovae.runs import derive_seeds


def train(tau: float, n: int, first_probes: int) -> list[dict]:
    """The robust cell at ``tau`` with ``first_probes`` (the sweep's own training function, its
    algorithm factory wrapped for the duration of the call)."""
    original = sweep._algorithm

    def algorithm(variant: str):
        alg = original(variant)
        alg.settings = RobustSettings(first_probes=first_probes)
        return alg

    settings = dict(n=n, max_steps=3000, oracle_steps=2000, taus=[tau], sigma0=list(sweep.SIGMA0),
                    seeds=[int(s) for s in derive_seeds(0, 10)], device="cpu")
    sweep._algorithm = algorithm
    try:
        return sweep.train_cell("robust", tau, settings)
    finally:
        sweep._algorithm = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.5, 0.3, 0.2, 0.1])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for tau in args.taus:
        for rule in (1, 2):
            key = f"first_probes={rule} tau={tau} n={args.n}"
            if key not in results:
                start = time.perf_counter()
                results[key] = {"wall": time.perf_counter() - start, "rows": train(tau, args.n, rule)}
                results[key]["wall"] = time.perf_counter() - start
                args.out.write_text(json.dumps(results))
            rows = results[key]["rows"]
            s = sweep.cell_summary(rows, 3000)
            print(f"{key}: within 5 % {s['success']:.0%}, median error {s['median_rel_err']:.1%}, "
                  f"max error {max(r['rel_err'] for r in rows):.1%}, median steps {s['median_steps']:.0f}, "
                  f"at the cap {s['at_cap']}, wall {results[key]['wall']:.0f} s", flush=True)
        old, new = (results[f"first_probes={rule} tau={tau} n={args.n}"]["rows"] for rule in (1, 2))
        for a, b in zip(old, new):
            # a run the rule left alone can still differ in float rounding (other replicates share its batch)
            if a["steps"] != b["steps"] or abs(a["rel_err"] - b["rel_err"]) > 1e-4:
                print(f"  changed: σ₀ {a['sigma0']}, seed {a['seed']}: KL {a['kl']:.3f} → {b['kl']:.3f}, error "
                      f"{a['rel_err']:.1%} → {b['rel_err']:.1%}, steps {a['steps']} → {b['steps']}, probes "
                      f"{a['calibrations']} → {b['calibrations']}, {b['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
