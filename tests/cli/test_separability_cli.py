"""``pyrovae check-separability DATA``: a registered data set or a CSV file; one line and exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pyrovae.cli.main import app

runner = CliRunner()


def test_csv_file_and_json_output(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    x = rng.standard_normal((100, 2)) + 4 * y[:, None]
    f = tmp_path / "cohorts.csv"
    np.savetxt(f, np.c_[x, y], delimiter=",", header="x1,x2,y1", comments="")
    result = runner.invoke(app, ["check-separability", str(f), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["data"] == "cohorts.csv" and out["n"] == 100 and out["balanced_accuracy"] > 0.95


def test_registered_data_set():
    result = runner.invoke(app, ["check-separability", "discrete-semicircle", "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "balanced accuracy" in result.output and "mean entropy" in result.output


@pytest.mark.parametrize("args, message", [
    (["no-such-thing"], "neither a registered data set nor an existing file"),
    (["two-moon"], "has no class labels"),
    (["discrete-semicircle", "--folds", "1"], "folds must be"),
])
def test_bad_input_gives_one_line_and_exit_2(args, message):
    result = runner.invoke(app, ["check-separability", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


def test_continuous_labels_in_a_csv_are_refused(tmp_path):
    f = tmp_path / "c.csv"
    np.savetxt(f, np.c_[np.arange(20.0), np.linspace(0, 1, 20)], delimiter=",", header="x1,y1", comments="")
    result = runner.invoke(app, ["check-separability", str(f)])
    assert result.exit_code == 2 and "integer class labels" in result.output


def test_uci_file_in_its_own_format(tmp_path):
    import shutil
    from pathlib import Path

    f = tmp_path / "cmc.data"
    shutil.copy(Path(__file__).parents[1] / "data" / "fixtures" / "cmc_small.data", f)
    result = runner.invoke(app, ["check-separability", str(f), "--folds", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 15 and out["classes"] == 3
