"""The ``pyrovae`` command: a thin typer app over the library."""

from __future__ import annotations

from typing import Optional

import typer

from pyrovae.cli.common import cli_errors, use_threads
from pyrovae.cli.datasets import datasets_app
from pyrovae.cli.demo import demo_command
from pyrovae.cli.diagnose import diagnose_command
from pyrovae.cli.experiment import experiment_app
from pyrovae.cli.posterior import posterior_command
from pyrovae.cli.separability import separability_command
from pyrovae.cli.train import train_command

__all__ = ["app", "run"]

app = typer.Typer(
    name="pyrovae",
    help="Understand and fix the ways VAEs fail: models, inference and evidence as Pyro programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    threads: Optional[int] = typer.Option(
        None, "--threads", help="torch CPU threads for the command and its worker processes (default 1; "
        "raise it on an idle machine).",
    ),
) -> None:
    """Understand and fix the ways VAEs fail: models, inference and evidence as Pyro programs."""
    cli_errors(use_threads)(threads)


app.command("train")(train_command)
app.command("demo")(demo_command)
app.command("posterior")(posterior_command)
app.command("diagnose")(diagnose_command)
app.command("check-separability")(separability_command)
app.add_typer(datasets_app, name="datasets")
app.add_typer(experiment_app, name="experiment")


def run() -> None:
    app()
