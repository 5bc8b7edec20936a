"""What the command-line tests share: invoking the app, and the one-error-line contract."""

from typer.testing import CliRunner

from pyrovae.cli.main import app

runner = CliRunner()


def invoke(*args):
    """``pyrovae ARGS`` in process; every argument passed as text."""
    return runner.invoke(app, [str(a) for a in args])


def assert_one_error_line(result, *words) -> None:
    """Exit code 2 and exactly one line, ``error: …``, containing ``words``; never torch's advice."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(w in lines[0] for w in words), result.output
    assert "weights_only=False" not in result.output
