"""What every command shares: one-line errors with exit code 2, and the console."""

from __future__ import annotations

import functools
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from pyrovae.errors import PyrovaeError

__all__ = ["console", "err_console", "cli_errors", "fail", "use_threads", "chosen_threads"]

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


_chosen_threads: int | None = None


def use_threads(threads: int | None) -> None:
    """torch's CPU threads for this command and every process it starts: ``threads``, or 1 when
    None. One thread per process is the default because these small networks gain ≈ 10 % from a
    second thread on an idle machine and lose up to 50× when another job shares the cores (README).
    Set through the environment (``OMP_NUM_THREADS``, read when torch is imported, which the
    commands do lazily, and inherited by worker processes), and directly when torch is loaded."""
    global _chosen_threads
    from pyrovae.validation import MAX_UNITS, integer_at_least

    if threads is not None:
        threads = integer_at_least("--threads", threads, 1, MAX_UNITS)
    _chosen_threads = threads
    count = str(threads or 1)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = count
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(count))


def chosen_threads() -> int | None:
    """The ``pyrovae --threads`` given on this command line, or None."""
    return _chosen_threads
