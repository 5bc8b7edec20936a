"""``pyrovae datasets``: list the registered data sets; export a generated one to CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pyrovae.cli.common import cli_errors, console
from pyrovae.errors import DataError

__all__ = ["datasets_app"]

datasets_app = typer.Typer(help="List data sets or export one to CSV.", no_args_is_help=True)


@datasets_app.command("list")
@cli_errors
def list_command() -> None:
    """The registered data sets with their generator options."""
    from rich.markup import escape

    from pyrovae.data.registry import DATASETS

    table = Table(header_style="bold")
    for col in ("name", "options", "what", "source"):
        table.add_column(col)
    for entry in DATASETS.values():
        options = ", ".join(f"{name}={default}" for name, default in entry.options.items())
        table.add_row(*(escape(text) for text in (entry.name, options, entry.summary, entry.source)))  # "pyrovae[data]" is no markup
    console.print(table)


@datasets_app.command("export")
@cli_errors
def export_command(
    name: str = typer.Argument(..., help="Registered data set."),
    out: Path = typer.Option(..., help="CSV file to write (columns x1..xp, y1..yq)."),
    n: Optional[int] = typer.Option(None, help="Number of points."),
    tau: Optional[float] = typer.Option(None, help="Noise level."),
    seed: Optional[int] = typer.Option(None, help="Generator seed."),
) -> None:
    """Generate a data set and write it as CSV."""
    from pyrovae.data.registry import make_dataset

    options = {k: v for k, v in {"n": n, "tau": tau, "seed": seed}.items() if v is not None}
    data = make_dataset(name, **options)
    if out.parent and not out.parent.exists():
        raise DataError(f"directory {out.parent} does not exist")
    data.to_csv(out)
    console.print(f"wrote {len(data)} rows of {name} to [bold]{out}[/]")
