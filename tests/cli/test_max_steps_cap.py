"""``--max-steps`` is a hard cap on optimiser steps whatever K is (issue 13, item 2)."""

import json

import pytest
from typer.testing import CliRunner

from pyrovae.cli.main import app


@pytest.mark.parametrize("k, cap", [("3000", "10"), ("99999999999999999999", "3")])
def test_max_steps_caps_the_steps_whatever_k(k, cap, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--algorithm", "analytic", "--n", "50", "-K", k, "--max-steps", cap,
                                      "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == int(cap) and metrics["status"] == "max_steps"
