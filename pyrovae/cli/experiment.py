"""``pyrovae experiment``: list the paper-table experiments; run one and print it beside the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markdown import Markdown
from rich.table import Table

from pyrovae.cli.common import cli_errors, console, fail
from pyrovae.experiments.registry import EXPERIMENTS, ExperimentOptions, _load_all, get_experiment

__all__ = ["experiment_app"]

experiment_app = typer.Typer(help="Reproduce the papers' tables.", no_args_is_help=True)


@experiment_app.command("list")
@cli_errors
def list_command() -> None:
    """The experiments, one per paper table or figure."""
    _load_all()
    table = Table(header_style="bold")
    for col in ("name", "what", "reproduces"):
        table.add_column(col)
    for exp in sorted(EXPERIMENTS.values(), key=lambda e: e.name):
        table.add_row(exp.name, exp.title, exp.source)
    console.print(table)


@experiment_app.command("describe")
@cli_errors
def describe_command(name: str = typer.Argument(..., help="Experiment name (see `pyrovae experiment list`).")) -> None:
    """What an experiment reproduces, and what `--full` runs for it."""
    experiment = get_experiment(name)
    console.print(f"[bold]{experiment.name}[/]: {experiment.title}\nreproduces: {experiment.source}")
    console.print("--full: " + (experiment.full or "none (this experiment has no --full protocol)"))


@experiment_app.command("run")
@cli_errors
def run_command(
    name: str = typer.Argument(..., help="Experiment name (see `pyrovae experiment list`)."),
    quick: bool = typer.Option(False, "--quick", help="A reduced setting that finishes in minutes."),
    full: bool = typer.Option(False, "--full", help=(
        "The paper's whole protocol: its data-set versions, restarts, hyper-parameter grids, selection by each "
        "method's own validation objective and training length (hours to days; the Yacoby, Pan & Doshi-Velez "
        "experiments). `pyrovae experiment describe NAME` says what it runs.")),
    reps: Optional[int] = typer.Option(None, help="Repetitions (default: the paper's, or fewer with --quick)."),
    jobs: int = typer.Option(1, help="Parallel processes."),
    seed: int = typer.Option(0, help="Root seed; repetition seeds derive from it."),
    out: Optional[str] = typer.Option(None, help="Output directory (default runs/experiments/NAME[-quick])."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Run an experiment; write its tables (CSV, Markdown) beside the paper's numbers."""
    from pyrovae.errors import ConfigError
    from pyrovae.runs import prepare_run_dir
    from pyrovae.validation import out_path

    experiment = get_experiment(name)
    if full and experiment.full is None:
        raise ConfigError(f"experiment {name!r} has no --full protocol; run it without --full")
    suffix = "-quick" if quick else "-full" if full else ""
    out = Path(out_path("--out", out)) if out is not None else Path("runs") / "experiments" / (name + suffix)
    options = ExperimentOptions(out=out, quick=quick, full=full, reps=reps, jobs=jobs, seed=seed, progress=not quiet)
    prepare_run_dir(out)
    report = experiment.run(options)
    if options.diverged:
        note = "Diverged runs, left out of every summary: " + ", ".join(options.diverged) + "."
        report.conclusion = f"{report.conclusion}\n\n{note}".strip()
    report.write(out)
    console.print(Markdown(report.to_markdown()))
    console.print(f"written: [bold]{out / 'report.md'}[/] (and CSV per table, report.json)")
    if options.diverged:
        fail(f"{len(options.diverged)} run(s) diverged (NaN) and are left out of the tables: "
             + ", ".join(options.diverged), 1)
