"""``pyrovae diagnose RUN_DIR``: every check of the five papers on a finished run, as a table, a
Markdown summary, a self-contained HTML page and ``diagnosis.json``; ``--fix`` trains the top
remedy and shows the two diagnoses side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pyrovae.cli.common import cli_errors, console

__all__ = ["diagnose_command", "print_diagnosis"]

_STYLE = {"ok": "green", "warning": "yellow", "failure": "bold red", "skipped": "dim"}


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def print_diagnosis(diag, paths: dict | None = None) -> None:
    """The findings as a rich table, the top remedy and its command, and where the report is."""
    table = Table(title=f"diagnosis of {escape(diag.run_dir)} ({diag.model}, {diag.config.get('algorithm')})",
                  header_style="bold", show_lines=True)
    for col, kw in (("check", {}), ("verdict", {}), ("number", {"justify": "right"}), ("threshold", {}),
                    ("remedy", {})):
        table.add_column(col, **kw)
    for f in diag.findings:
        table.add_row(escape(f.check), f"[{_STYLE[f.verdict]}]{f.verdict}[/]", _number(f.value), escape(f.threshold),
                      escape(f.remedy.name) if f.remedy else "")
    console.print(table)
    for f in diag.findings:
        if f.verdict in ("warning", "failure"):
            console.print(f"[{_STYLE[f.verdict]}]{escape(f.check)}[/]: {escape(f.summary)} [dim]({escape(f.source)})[/]",
                          highlight=False)
    top = diag.top_remedy
    if top is not None:
        console.print(f"\n[bold]try first:[/] {escape(top.text)}", highlight=False)
        if top.command:
            console.print(f"  {escape(top.command)}", highlight=False, soft_wrap=True)
    else:
        console.print(f"\n[bold green]no failure found[/] ({diag.seconds:.1f} s)")
    if paths:
        console.print(f"report: [bold]{escape(str(paths['html']))}[/] (also {paths['markdown'].name}, "
                      f"{paths['json'].name})", highlight=False, soft_wrap=True)


def _before_after(before, after) -> None:
    table = Table(title="before / after the remedy", header_style="bold")
    for col in ("check", "before", "after"):
        table.add_column(col)
    later = {f.check: f for f in after.findings}
    for f in before.findings:
        g = later.get(f.check)
        table.add_row(escape(f.check), f"[{_STYLE[f.verdict]}]{f.verdict}[/] {_number(f.value)}",
                      "" if g is None else f"[{_STYLE[g.verdict]}]{g.verdict}[/] {_number(g.value)}")
    console.print(table)


@cli_errors
def diagnose_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pyrovae train` (or demo)."),
    out: Optional[str] = typer.Option(None, help="Report directory (default RUN_DIR/diagnosis)."),
    fix: bool = typer.Option(False, "--fix", help="Train the top remedy into RUN_DIR-fix-NAME and diagnose it too."),
    max_points: int = typer.Option(2000, help="Data points the checks use (a random subsample)."),
    seed: int = typer.Option(0, help="Seed of the subsample and of every Monte Carlo draw."),
    quiet: bool = typer.Option(False, help="No progress bar while --fix trains."),
) -> None:
    """Check a finished run for posterior collapse, a mis-set decoder σ, posterior mismatch, an ELBO far
    from the log-likelihood, samples unlike the data and (M2) functional collapse; each finding with its
    threshold, source and the `pyrovae train` command of its remedy."""
    from pyrovae.diagnosis import DEFAULT_OUT, diagnose
    from pyrovae.diagnosis.report import write_report
    from pyrovae.validation import out_path

    report_dir = Path(out_path("--out", out)) if out is not None else run_dir / DEFAULT_OUT
    diag = diagnose(run_dir, write=False, max_points=max_points, seed=seed)
    paths = write_report(diag, report_dir)
    print_diagnosis(diag, paths)
    if not fix:
        return
    top = diag.top_remedy
    if top is None or not top.command:
        console.print("--fix: nothing to fix" if top is None else "--fix: the top remedy does not apply to this run")
        return
    from pyrovae.api import train
    from pyrovae.diagnosis.remedies import fix_dir, remedy_config

    target = fix_dir(run_dir, top)
    console.print(f"\n[bold]--fix:[/] {escape(top.command)}", highlight=False, soft_wrap=True)
    train(remedy_config(diag_config(diag), top), out=target, progress=not quiet)
    after = diagnose(target, max_points=max_points, seed=seed)
    print_diagnosis(after, {"html": target / DEFAULT_OUT / "diagnosis.html",
                            "markdown": target / DEFAULT_OUT / "diagnosis.md", "json": target / DEFAULT_OUT / "diagnosis.json"})
    _before_after(diag, after)


def diag_config(diag):
    """The diagnosed run's configuration, rebuilt from the diagnosis."""
    from pyrovae.config import RunConfig

    return RunConfig(**diag.config).validate()
