"""An error message is printed as written: brackets in it are text, not rich markup."""

import pytest
import typer

from pyrovae.cli.common import fail


def test_fail_keeps_square_brackets(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        fail("install it with pip install 'pyrovae[data]' [bold]now[/bold]")
    assert exit_info.value.exit_code == 2
    err = capsys.readouterr().err
    assert "'pyrovae[data]'" in err and "[bold]now[/bold]" in err and len(err.strip().splitlines()) == 1
