"""`pyrovae experiment run NAME --full`: the papers' whole protocols, where an experiment has one."""

import pytest
from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.experiments.registry import ExperimentOptions
from pyrovae.papers import get_experiment

runner = CliRunner()
FULL = ("libi-table1", "yacoby-table1", "yacoby-table2", "yacoby-appendix-e2", "yacoby-spiral-noise", "yacoby-m2",
        "yacoby-m2-sweep", "yacoby-m2-real")


@pytest.mark.parametrize("name", FULL)
def test_every_yacoby_experiment_describes_its_full_protocol(name):
    text = get_experiment(name).full
    assert text and "restart" in text and "validation" in text
    result = runner.invoke(app, ["experiment", "describe", name])
    assert result.exit_code == 0 and "--full:" in result.output and "restart" in result.output


def test_full_is_refused_where_there_is_none_and_with_quick(tmp_path):
    result = runner.invoke(app, ["experiment", "run", "calibration-robustness", "--full", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "has no --full protocol" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    result = runner.invoke(app, ["experiment", "run", "yacoby-m2", "--full", "--quick", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert not (tmp_path / "b").exists()
    with pytest.raises(Exception, match="exclude each other"):
        ExperimentOptions(out=tmp_path, quick=True, full=True)


def test_run_help_says_what_full_is():
    result = runner.invoke(app, ["experiment", "run", "--help"])
    assert result.exit_code == 0 and "--full" in result.output and "protocol" in result.output
