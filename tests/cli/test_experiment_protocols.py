"""`pyrovae experiment run NAME --full` exists, and the list says what each paper protocol is (issue 17)."""

from __future__ import annotations

from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.experiments.registry import EXPERIMENTS, _load_all

runner = CliRunner()
PAPERS = ("liu-", "dai-", "berger-")  # Liu & Wang 2025; Dai, Wang & Wipf 2019; Berger & Sebag 2021


def test_every_experiment_of_these_papers_states_its_full_protocol():
    _load_all()
    names = [name for name in EXPERIMENTS if name.startswith(PAPERS)]
    assert {"liu-table1", "liu-table2", "liu-table3", "liu-appendix-e", "dai-depth", "dai-gamma-bound",
            "berger-table1"} <= set(names)
    for name in names:
        assert "(--full: " in EXPERIMENTS[name].title, name
    assert "20 repetitions" in EXPERIMENTS["liu-table1"].title and "5 seeds" in EXPERIMENTS["liu-table2"].title
    assert "10 evaluations" in EXPERIMENTS["liu-table3"].title and "depths 1-10" in EXPERIMENTS["dai-depth"].title


def test_full_is_a_flag_of_experiment_run():
    help_text = runner.invoke(app, ["experiment", "run", "--help"], terminal_width=200).output
    assert "--full" in help_text and "--quick" in help_text
    # --full parses (the run stops at the bad --jobs, before any training)
    result = runner.invoke(app, ["experiment", "run", "dai-local-minimum", "--full", "--jobs", "0"])
    assert result.exit_code == 2 and "--jobs" in result.output and "No such option" not in result.output
