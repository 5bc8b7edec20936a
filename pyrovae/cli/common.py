"""What every command shares: one-line errors with exit code 2, and the console."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console
from rich.markup import escape

from pyrovae.errors import PyrovaeError

__all__ = ["console", "err_console", "cli_errors", "fail"]

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``. The message is
    printed as it is: square brackets in it (``'pyrovae[data]'``) are not rich markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def cli_errors(fn):
    """Turn pyrovae's own exceptions into one clear line and exit code 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PyrovaeError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            err_console.print("interrupted; run the same command again to resume from the last checkpoint")
            sys.exit(130)

    return wrapper
