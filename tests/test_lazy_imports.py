"""The command line's help imports no numerical library; the package leaves matplotlib's back end alone."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str, **env) -> str:
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **env})
    return result.stdout.strip()


def test_cli_help_imports_neither_torch_nor_pandas_nor_matplotlib():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom pyrovae.cli.main import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'scipy', 'pyro') if m in sys.modules))")
    assert _python(code) == "[]"


def test_import_pyrovae_and_its_api_keep_the_users_matplotlib_backend():
    code = ("import pyrovae, pyrovae.plots\npyrovae.train\nimport matplotlib\nprint(matplotlib.get_backend())")
    assert _python(code, MPLBACKEND="svg") == "svg"
