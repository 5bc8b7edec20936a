"""``pyrovae experiment``: list the paper-table experiments; run one and print it beside the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markdown import Markdown
from rich.table import Table

from pyrovae.cli.common import cli_errors, console, fail
from pyrovae.experiments.registry import EXPERIMENTS, ExperimentOptions
from pyrovae.papers import experiments as load_experiments, get_experiment

__all__ = ["experiment_app"]

experiment_app = typer.Typer(help="Reproduce the papers' tables.", no_args_is_help=True)


@experiment_app.command("list")
@cli_errors
def list_command() -> None:
    """The experiments, one per paper table or figure."""
    load_experiments()
    table = Table(header_style="bold")
    for col in ("name (code in pyrovae/papers/)", "what", "reproduces"):
        table.add_column(col, overflow="fold")
    for exp in sorted(EXPERIMENTS.values(), key=lambda e: (e.code, e.name)):
        table.add_row(f"{exp.name}\n[dim]{exp.code.removeprefix('pyrovae/papers/')}[/]", exp.title, exp.source)
    console.print(table)


@experiment_app.command("describe")
@cli_errors
def describe_command(name: str = typer.Argument(..., help="Experiment name (see `pyrovae experiment list`).")) -> None:
    """What an experiment reproduces, and what `--full` runs for it."""
    experiment = get_experiment(name)
    console.print(f"[bold]{experiment.name}[/]: {experiment.title}\nreproduces: {experiment.source}\n"
                  f"code: {experiment.code}")
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
    jobs: int = typer.Option(1, help="Parallel processes on this machine."),
    scheduler: Optional[str] = typer.Option(
        None, help="Run the tasks on the Dask cluster whose scheduler is at this address (tcp://HOST:8786); "
                   "needs pyrovae[cluster] and a file system the workers share."),
    cluster: Optional[str] = typer.Option(None, help="local:N starts a Dask LocalCluster of N worker processes."),
    settings: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                       help="Override one of the experiment's settings (repeatable)."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N], for the experiments whose models train there."),
    seed: int = typer.Option(0, help="Root seed; repetition seeds derive from it."),
    out: Optional[str] = typer.Option(None, help="Output directory (default runs/experiments/NAME[-quick])."),
    quiet: bool = typer.Option(False, help="No progress."),
    stored_only: bool = typer.Option(False, "--stored-only", help=(
        "Write the report from the tasks already in OUT/tasks: every task of the experiment's parallel maps is "
        "read from there (one not stored is an error), so no model of those trains; what an experiment computes "
        "outside its tasks (closed forms, data-generating fits) runs again. --device then only names the stored "
        "tasks, so a GPU run's tasks can be reported on a machine without one.")),
) -> None:
    """Run an experiment; write its tables (CSV, Markdown) beside the paper's numbers.

    Each finished task is kept in OUT/tasks and reused when the same command runs again."""
    from pyrovae.errors import ConfigError
    from pyrovae.executors import make_executor
    from pyrovae.runs import prepare_run_dir, write_provenance
    from pyrovae.validation import out_path

    experiment = get_experiment(name)
    if full and experiment.full is None:
        raise ConfigError(f"experiment {name!r} has no --full protocol; run it without --full")
    if device != "cpu" and not experiment.devices:
        raise ConfigError(f"experiment {name} trains on the CPU only; --device applies to "
                          + ", ".join(sorted(e.name for e in EXPERIMENTS.values() if e.devices)))
    suffix = "-quick" if quick else "-full" if full else ""
    out = Path(out_path("--out", out)) if out is not None else Path("runs") / "experiments" / (name + suffix)
    if stored_only and not any((out / "tasks").glob("*.json")):
        raise ConfigError(f"--stored-only: no stored tasks in {out / 'tasks'}")
    executor = make_executor(jobs, scheduler, cluster)
    options = ExperimentOptions(out=out, quick=quick, full=full, reps=reps, jobs=jobs, seed=seed, progress=not quiet,
                                device=device, overrides=_overrides(settings), executor=executor,
                                stored_only=stored_only)
    prepare_run_dir(out)
    write_provenance(out, {"experiment": name, "executor": executor.description}
                     | ({"stored_only": True} if stored_only else {}))
    with executor:
        report = experiment.run(options)
    if options.diverged:
        note = "Diverged runs, left out of every summary: " + ", ".join(options.diverged) + "."
        report.conclusion = f"{report.conclusion}\n\n{note}".strip()
    report.task_seconds, report.task_commits = options.task_seconds, options.task_commits
    report.write(out)
    console.print(Markdown(report.to_markdown()))
    console.print(f"written: [bold]{out / 'report.md'}[/] (and CSV per table, report.json)")
    if options.diverged:
        fail(f"{len(options.diverged)} run(s) diverged (NaN) and are left out of the tables: "
             + ", ".join(options.diverged), 1)


def _overrides(pairs: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs as a dict (each key once)."""
    from pyrovae.errors import ConfigError

    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        if key in overrides:
            raise ConfigError(f"--set {key} given twice")
        overrides[key] = value
    return overrides
