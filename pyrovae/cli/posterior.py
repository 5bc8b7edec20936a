"""``pyrovae posterior RUN_DIR``: ground-truth posteriors of a trained run's decoder.

Runs the exact (linear decoders), grid (1-D/2-D latents), NUTS or batched-HMC posterior for
chosen data points, compares the encoder with it (KL(q‖p), Yacoby, Pan & Doshi-Velez 2021,
Eq. 3), and writes ``samples.nc`` (a complete ArviZ object: posterior, log_likelihood,
posterior_predictive, observed/constant data, sample_stats), ``diagnostics.csv/.json`` and
``plots/`` (q against the posterior, trace, rank; see :mod:`pyrovae.posterior.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pyrovae.cli.common import cli_errors, console

__all__ = ["posterior_command", "posterior"]


@cli_errors
def posterior_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pyrovae train` (config.json + checkpoint/)."),
    method: str = typer.Option("grid", "--method", help="exact (linear decoders) | grid (1-D/2-D latents) | nuts | hmc"),
    points: str = typer.Option("20", help="A count ('20': the first 20 points) or indices ('0,1,2')."),
    chains: int = typer.Option(2, help="Chains (i.i.d. draws for exact/grid); r̂ needs at least 2."),
    samples: int = typer.Option(500, help="Draws per chain."),
    warmup: Optional[int] = typer.Option(None, help="Warm-up iterations per chain (default: --samples)."),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    seed: int = typer.Option(0, help="Seed of the sampler."),
    out: Optional[str] = typer.Option(None, help="Output directory (default RUN_DIR/posterior-<method>)."),
) -> None:
    """Ground-truth posteriors p(z | x, y) of a trained decoder, with r̂/ESS diagnostics and KL(q‖p)."""
    from pyrovae.api import load_run
    from pyrovae.posterior.report import METHODS, posterior_report
    from pyrovae.errors import ConfigError, DataError
    from pyrovae.validation import out_path

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not run_dir.is_dir():
        raise DataError(f"run directory not found: {run_dir}")
    model, data, _cfg = load_run(run_dir, device=device)
    out = Path(out_path("--out", out)) if out is not None else run_dir / f"posterior-{method}"
    with console.status(f"{method} posterior of {run_dir} ..."):
        report = posterior_report(
            model, data, method=method, points=points, chains=chains, samples=samples,
            warmup=warmup, device=device, out_dir=out, seed=seed,
        )
    s = report.summary
    table = Table(title=f"{method} posterior: {len(s['points'])} points, latent dim {s['latent_dim']}", header_style="bold")
    for col in ("max r̂", "min ESS bulk", "min ESS tail", "divergences", "mean KL(q‖p)", "wall time"):
        table.add_column(col, justify="right")
    kl = s.get("mean_kl_q_p")
    table.add_row(
        f"{s['max_r_hat']:.3f}", f"{s['min_ess_bulk']:.0f}", f"{s['min_ess_tail']:.0f}", str(s["divergences"]),
        "—" if kl is None else f"{kl:.3f}", f"{s['wall_s']:.1f} s",
    )
    console.print(table)
    if "grid_crosscheck_flagged_points" in s:
        bad = s["grid_crosscheck_flagged_points"]
        console.print("grid cross-check: " + ("all points agree with the grid" if not bad else f"[bold red]points {bad} disagree with the grid[/]"))
    if s["flagged_points"]:
        console.print(f"[yellow]flagged points[/] (r̂ > {s.get('rhat_max', 1.01)}, low ESS, divergences or grid): {s['flagged_points']}")
    plots = ", ".join(p.name for key, p in report.files.items() if p.parent.name == "plots")
    console.print(f"written: [bold]{out}[/] (samples.nc, diagnostics.csv, diagnostics.json, plots/: {plots})")


posterior = posterior_command
