"""`pyrovae experiment run NAME --full` runs the paper's protocol for every experiment of Liu & Wang (2025),
Dai, Wang & Wipf (2020) and Berger & Sebag (2020), and `experiment describe` says what it is (issue 17)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.experiments.registry import EXPERIMENTS
from pyrovae.papers import experiments as load_experiments

runner = CliRunner()
PAPERS = ("liu-", "dai-", "berger-")


def test_every_experiment_of_these_papers_has_a_full_protocol():
    load_experiments()
    names = [name for name in EXPERIMENTS if name.startswith(PAPERS)]
    assert {"liu-table1", "liu-table2", "liu-table3", "liu-appendix-e", "dai-depth", "dai-gamma-bound",
            "berger-table1"} <= set(names)
    for name in names:
        assert EXPERIMENTS[name].full, name
    assert "20 repetitions" in EXPERIMENTS["liu-table1"].full and "5 seeds" in EXPERIMENTS["liu-table2"].full
    assert "10 evaluations" in EXPERIMENTS["liu-table3"].full and "depths 1-10" in EXPERIMENTS["dai-depth"].full
    assert "4 blocks × 200" in EXPERIMENTS["berger-table1"].full


def test_describe_says_what_full_runs():
    result = runner.invoke(app, ["experiment", "describe", "liu-table1"], terminal_width=200)
    assert result.exit_code == 0 and "--full: " in result.output and "20 repetitions" in result.output
    # --full is accepted for these experiments (the run stops at the bad --jobs, before any training)
    result = runner.invoke(app, ["experiment", "run", "dai-gamma-bound", "--full", "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs" in result.output and "no --full protocol" not in result.output


def test_every_experiment_lives_in_its_papers_folder_and_says_where():
    """A newcomer finds a table's code from its name: ``describe`` and ``list`` print the file."""
    experiments = load_experiments()
    folders = {"liu-": "liu_wang_2025", "calibration-": "liu_wang_2025", "yacoby-": "yacoby_2021_failure_modes",
               "libi-": "yacoby_2020_libi", "dai-": "dai_wang_wipf_2020", "berger-": "berger_sebag_2020"}
    for name, experiment in experiments.items():
        folder = next(f for prefix, f in folders.items() if name.startswith(prefix))
        assert experiment.code.startswith(f"pyrovae/papers/{folder}/"), (name, experiment.code)
        assert (Path(__file__).parents[2] / experiment.code).is_file()
    result = runner.invoke(app, ["experiment", "describe", "liu-table1"], terminal_width=200)
    assert "code: pyrovae/papers/liu_wang_2025/two_moon.py" in result.output
    result = runner.invoke(app, ["experiment", "list"])
    assert result.exit_code == 0 and "liu_wang_2025/" in result.output
