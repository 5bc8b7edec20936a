"""Experiment framework: summaries, tables beside the paper, paired runs, the CLI."""

import json
import math

import pytest
from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.config import RunConfig
from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.experiments import ExperimentOptions, ExperimentReport, ResultTable, summarize_values
from pyrovae.papers import get_experiment
from pyrovae.papers.liu_wang_2025.two_moon import _performance_goal, _success
from pyrovae.experiments.runner import run_grid


def test_summaries_are_mean_and_sample_sd_of_finite_values():
    s = summarize_values([1.0, 2.0, 4.0, float("nan"), None])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3)
    assert s.sd == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert summarize_values([]).format() == "NA"
    assert summarize_values([0.5]).format() == "0.5"
    assert summarize_values([1e-5, 3e-5]).format() == "2.00e-05 ± 1.4e-05"


def test_table_puts_the_paper_beside_ours(tmp_path):
    table = ResultTable("t", "A table", ["A", "B"], ["c1", "c2"])
    table.set("A", "c1", summarize_values([1.0, 3.0]), "2.5")
    table.set("B", "c2", "NA [0/2]", "NA")
    md = table.to_markdown()
    assert "| A | 2 ± 1.4 (paper 2.5) | — |" in md
    assert "| B | — | NA [0/2] (paper NA) |" in md
    report = ExperimentReport({"reps": 2}, [table], wall_time=1.0, conclusion="holds", name="x", title="X", source="paper, Table 9")
    written = report.write(tmp_path)
    assert (tmp_path / "t.csv").is_file() and (tmp_path / "report.md").read_text().count("paper 2.5") == 1
    assert json.loads((tmp_path / "report.json").read_text())["tables"]["t"][0]["mean"] == 2.0
    assert len(written) == 3


def test_run_grid_pairs_seeds_across_configurations(tmp_path):
    base = RunConfig(n=100, max_steps=6, K=3, algorithm="analytic")
    results = run_grid({"a": base, "b": base.replace(K=2)}, reps=2, options=ExperimentOptions(out=tmp_path, seed=5),
                       out=tmp_path)
    assert [r["seed"] for r in results["a"]] == [r["seed"] for r in results["b"]]
    assert results["a"][0]["seed"] != results["a"][1]["seed"]
    assert results["a"][0]["steps"] == 6 and (tmp_path / "a" / "rep-01" / "metrics.json").is_file()


def test_success_and_performance_goal():
    assert _success({"status": "converged", "sigma": 0.1029})
    assert not _success({"status": "converged", "sigma": 0.1031})
    assert not _success({"status": "max_steps", "sigma": 0.1})
    text = _performance_goal({("Calibrated C=0.05", 25): 10.0, ("Monotonic", 25): 25.0, ("Uncalibrated", 100): 30.0})
    assert "= 0.40 (goal ≤ 0.5: met)" in text and "= 0.33 (goal ≤ 0.3: not met)" in text
    assert "not measurable" in _performance_goal({("Monotonic", 25): 25.0})


def test_unknown_experiment_and_bad_options():
    with pytest.raises(UnknownNameError):
        get_experiment("nope")
    with pytest.raises(ConfigError):
        ExperimentOptions(out=".", reps=0)
    runner = CliRunner()
    result = runner.invoke(app, ["experiment", "run", "nope"])
    assert result.exit_code == 2 and "unknown experiment" in result.output
    result = runner.invoke(app, ["experiment", "list"])
    assert result.exit_code == 0 and "liu-table1" in result.output and "liu-table2" in result.output


@pytest.mark.parametrize("name, rows", [("liu-table1", 5), ("liu-table2", 4)])
def test_liu_tables_smoke(name, rows, tmp_path):
    """The two-moon tables end to end on a tiny problem (the quick setting takes minutes), shrunk
    through their settings; Table 2's ``K`` is its grid, Table 1's the inner step count."""
    tiny = {"n": "60", "max_steps": "8", "K": "2" if name == "liu-table1" else "25,100"}
    report = get_experiment(name).run(ExperimentOptions(out=tmp_path, quick=True, reps=1, overrides=tiny))
    report.write(tmp_path)
    table = report.tables[0]
    assert len(table.rows) == rows and (tmp_path / "report.md").is_file()
    assert all((row, col) in table.cells for row in table.rows for col in table.columns)
    assert "(paper" in table.to_markdown()
    experiment = get_experiment(name)  # the report's name, title and source are the registry's, written once
    assert (report.name, report.title, report.source) == (experiment.name, experiment.title, experiment.source)
    assert (tmp_path / "report.md").read_text().startswith(f"## {experiment.title}")
    config = json.loads(next((tmp_path / "runs").glob("*/rep-00/config.json")).read_text())
    assert (config["n"], config["max_steps"]) == (60, 8) and report.settings["n"] == 60


def test_run_grid_batches_equal_single_runs_and_finished_runs_are_reused(tmp_path, monkeypatch):
    """Labels that differ only in per-replicate settings (here σ₀) train as one batch; each run
    equals `train` of its configuration alone; a rerun trains nothing."""
    from pyrovae.api import train

    base = RunConfig(n=150, max_steps=40, K=5, tol=0.01, algorithm="calibrated", calibration="paper", C=0.5)
    configs = {"s1": base, "s5": base.replace(sigma0=5.0)}
    results = run_grid(configs, reps=2, options=ExperimentOptions(out=tmp_path, seed=3), out=tmp_path / "grid")
    assert len(list((tmp_path / "grid" / "batches").iterdir())) == 1  # one batch of 4 replicates
    for label, cfg in configs.items():
        for i, row in enumerate(results[label]):
            alone = train(cfg.replace(seed=row["seed"]), plots=False).metrics
            assert row["steps"] == alone["steps"] and row["status"] == alone["status"]
            assert row["sigma"] == pytest.approx(alone["sigma"], rel=1e-4)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("pyrovae.api.train_batch", no_training)
    again = run_grid(configs, reps=2, options=ExperimentOptions(out=tmp_path, seed=3), out=tmp_path / "grid")
    assert again["s5"][1]["sigma"] == results["s5"][1]["sigma"]


def test_run_grid_alone_trains_every_run_on_its_own_clock(tmp_path):
    """A table of wall times (Liu & Wang's Table 2) must not time a batch: with ``alone`` each run is its
    own task (a batch of one), so its wall time is its own; its numbers are those of the batched run."""
    base = RunConfig(n=150, max_steps=40, K=5, tol=0.01, algorithm="calibrated", calibration="paper", C=0.5)
    configs = {"s1": base, "s5": base.replace(sigma0=5.0)}
    options = ExperimentOptions(out=tmp_path, seed=3)
    batched = run_grid(configs, reps=2, options=options, out=tmp_path / "batched")
    alone = run_grid(configs, reps=2, options=options, out=tmp_path / "alone", alone=True)
    assert len(list((tmp_path / "alone" / "batches").iterdir())) == 4
    for label in configs:
        for a, b in zip(alone[label], batched[label]):
            assert (a["steps"], a["status"]) == (b["steps"], b["status"])
            assert a["sigma"] == pytest.approx(b["sigma"], rel=1e-4)


def test_an_experiment_whose_runs_diverged_names_them_exits_1_and_never_averages_them(tmp_path):
    """Issue 13, item 5, for experiments: a learning rate of 1e30 makes every run NaN."""
    result = CliRunner().invoke(app, ["experiment", "run", "liu-table1", "--quick", "--reps", "1", "--quiet",
                                      "--set", "n=60", "--set", "K=2", "--set", "max_steps=8", "--set", "lr=1e30",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 1 and "diverged" in result.output and "Traceback" not in result.output
    assert "rep-00" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    cells = report["tables"]["table1"]
    assert cells and all(cell["n"] == 0 and cell["mean"] is None for cell in cells)  # nothing averaged
    assert "Diverged runs" in (tmp_path / "report.md").read_text()
