"""Batched HMC against Pyro NUTS on the posteriors of a trained σ-CVAE's decoder.

Trains a small σ-CVAE on two-moon (Liu & Wang 2025, Sec. 5.1; ``--train-steps`` steps, one
thread; decoder noise fixed at the data's τ = 0.1 so that the decoder uses its latent: a
calibrated run this short still has collapsed posteriors, equal to the prior), then for 10, 100 and 1,000 of its data points samples the true posteriors
:math:`p_\\theta(z_n \\mid x_n, y_n)` with

* :func:`pyrovae.posterior.batched_hmc` — one HMC sampler per chain and point, one tensor program;
* :func:`pyrovae.posterior.nuts_posterior` — Pyro's NUTS on the joint over all points (chains
  one after another),

with the same chains, warm-up and draws. For each it reports the CPU seconds of the sampler
(warm-up and sampling; ``time.process_time``, one torch thread), the minimum over parameters
(point × latent) of ``arviz.ess`` (bulk), their ratio (effective samples per CPU-second), the
largest r̂, and its agreement with the grid posterior of each point (2-D latent on
[-6, 6]², ``--grid-resolution`` cells per axis: mean absolute difference of the posterior means
and of the posterior sds, over points and latents; points the grid itself flags are counted). The
last line reads ``ratio HMC/NUTS min-ESS per CPU-s: X`` for the largest size.

Usage::

    .venv/bin/python benchmarks/posterior.py                           # 10 / 100 / 1,000 points
    .venv/bin/python benchmarks/posterior.py --sizes 10 100 --samples 200 --warmup 200
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def sampler_row(name, samples, grid):
    import arviz as az

    from pyrovae.posterior import to_arviz

    idata = to_arviz(samples)
    ess = float(az.ess(idata, var_names=["z"], method="bulk")["z"].min())
    rhat = float(az.rhat(idata, var_names=["z"])["z"].max())
    z = samples.z.double()
    mean, sd = z.mean((0, 1)), z.flatten(0, 1).std(0)
    cpu = samples.info["cpu_s"]
    return {
        "sampler": name,
        "cpu_s": cpu,
        "min_ess": ess,
        "ess_per_cpu_s": ess / cpu,
        "max_rhat": rhat,
        "divergences": int(samples.divergences().sum()) if name == "hmc" else int(samples.stats["diverging"].sum()),
        "mean_abs_err": float((mean - grid.mean).abs().mean()),
        "sd_abs_err": float((sd - grid.var.sqrt()).abs().mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="numbers of data points")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200, help="draws per chain")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up iterations per chain")
    parser.add_argument("--num-steps", type=int, default=10, help="leapfrog steps per batched-HMC transition")
    parser.add_argument("--max-tree-depth", type=int, default=10, help="NUTS")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--grid-resolution", type=int, default=301)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from pyrovae.api import build_data, train
    from pyrovae.config import load_config
    from pyrovae.posterior import batched_hmc, grid_posterior, model_target, nuts_posterior

    n = max(args.sizes)
    cfg = load_config(n=max(n, 200), max_steps=args.train_steps, K=25, algorithm="fixed", sigma0=0.1, seed=args.seed)
    t0 = time.perf_counter()
    model = train(cfg, plots=False).model
    data = build_data(cfg)
    print(f"trained a two-moon σ-CVAE (σ fixed at 0.1, {args.train_steps} steps, n = {cfg.n}, latent dim {cfg.latent_dim}) "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"chains {args.chains}, warm-up {args.warmup}, draws {args.samples}; batched HMC {args.num_steps} leapfrog steps; "
          f"NUTS max tree depth {args.max_tree_depth}; grid {args.grid_resolution}² cells; one torch thread")
    header = f"{'points':>6} {'sampler':>7} {'CPU s':>8} {'min ESS':>8} {'ESS/CPU-s':>10} {'max r̂':>7} {'div':>4} {'|Δmean|':>8} {'|Δsd|':>8}"
    print(header)
    ratio = None
    for k in args.sizes:
        target = model_target(model, data.condition, data.observed, points=k, dtype=torch.float64)
        grid = grid_posterior(target, limit=6.0, resolution=args.grid_resolution, on_flag="ignore")
        sd = grid.var.sqrt()
        print(f"{k:>6} {'grid':>7}  posterior sd {float(sd.min()):.3f}–{float(sd.max()):.3f} (median {float(sd.median()):.3f}); "
              f"{int(grid.flagged().sum())} points flagged by the grid's own checks", flush=True)
        hmc = batched_hmc(target, num_samples=args.samples, warmup_steps=args.warmup, num_chains=args.chains,
                          num_steps=args.num_steps, seed=args.seed)
        nuts = nuts_posterior(target, num_samples=args.samples, warmup_steps=args.warmup, num_chains=args.chains,
                              seed=args.seed, max_tree_depth=args.max_tree_depth)
        rows = [sampler_row("hmc", hmc, grid), sampler_row("nuts", nuts, grid)]
        for r in rows:
            print(f"{k:>6} {r['sampler']:>7} {r['cpu_s']:>8.2f} {r['min_ess']:>8.0f} {r['ess_per_cpu_s']:>10.1f} "
                  f"{r['max_rhat']:>7.3f} {r['divergences']:>4} {r['mean_abs_err']:>8.4f} {r['sd_abs_err']:>8.4f}", flush=True)
        ratio = rows[0]["ess_per_cpu_s"] / rows[1]["ess_per_cpu_s"]
    print(f"ratio HMC/NUTS min-ESS per CPU-s: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
