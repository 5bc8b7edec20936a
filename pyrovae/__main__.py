"""``python -m pyrovae …``: the command line, where the ``pyrovae`` script is not on the PATH."""

from pyrovae.cli.main import run

run()
