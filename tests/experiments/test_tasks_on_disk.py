"""Experiments that are sweep-safe: each task on disk as it finishes, reused on rerun, progress in a
log, the true task time across resumed runs, --set overrides, --device, provenance."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.errors import ConfigError
from pyrovae.experiments.registry import EXPERIMENTS, ExperimentOptions, override
from pyrovae.papers import experiments as load_experiments
from pyrovae.experiments.runner import map_tasks
from pyrovae.experiments.task_store import TaskStore, decode, encode, task_digest

FAIL_AT: set[int] = set()  # inputs for which _square fails (a task killed mid-grid)


def _square(x: int, pause: float = 0.0) -> dict:
    if x in FAIL_AT:
        raise RuntimeError(f"task {x} failed")
    time.sleep(pause)
    return {"x": x, "square": x * x, "root": math.sqrt(x) if x else math.nan}


def test_results_round_trip_through_strict_json():
    value = {"nan": math.nan, "inf": -math.inf, "t": torch.tensor([1.5, 2.0], dtype=torch.float64),
             "i": torch.tensor([3], dtype=torch.int64), "a": np.arange(3, dtype=np.int32), "n": np.float32(0.25),
             "tuple": (1, "b"), "nested": [{"x": None, "y": True}]}
    text = json.dumps(encode(value), allow_nan=False)  # strict JSON: no NaN / Infinity literals
    back = decode(json.loads(text))
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["t"].dtype == torch.float64 and torch.equal(back["t"], value["t"])
    assert back["i"].dtype == torch.int64 and back["i"].tolist() == [3]
    assert back["a"].dtype == np.int32 and back["a"].tolist() == [0, 1, 2]
    assert back["n"] == 0.25 and back["tuple"] == [1, "b"] and back["nested"] == [{"x": None, "y": True}]
    with pytest.raises(TypeError):
        encode({"model": object()})


def test_a_task_is_named_by_its_function_and_the_content_of_its_arguments():
    a = {"x": 2, "w": torch.ones(3)}
    assert task_digest(_square, a) == task_digest(_square, {"x": 2, "w": torch.ones(3)})
    assert task_digest(_square, a) != task_digest(_square, {"x": 2, "w": torch.tensor([1.0, 1.0, 1.5])})
    assert task_digest(_square, a) != task_digest(_square, {"x": 3, "w": torch.ones(3)})
    assert task_digest(_square, a) != task_digest(decode, a)


def test_the_report_names_every_commit_its_tasks_came_from(tmp_path, monkeypatch):
    """A run resumed after a code change reuses the tasks the old code computed; the report says so."""
    from pyrovae.experiments import task_store
    from pyrovae.experiments.results import ExperimentReport

    tasks = [{"x": x} for x in range(5)]
    monkeypatch.setattr(task_store, "code_commit", lambda: "aaaa")
    monkeypatch.setattr(f"{__name__}.FAIL_AT", {2})
    first = ExperimentOptions(out=tmp_path)
    with pytest.raises(RuntimeError):
        map_tasks(_square, tasks, first)
    assert first.task_commits == {"aaaa": 2}
    monkeypatch.setattr(task_store, "code_commit", lambda: "bbbb-dirty")
    monkeypatch.setattr(f"{__name__}.FAIL_AT", set())
    again = ExperimentOptions(out=tmp_path)
    map_tasks(_square, tasks, again)
    assert again.task_commits == {"aaaa": 2, "bbbb-dirty": 3}
    assert json.loads(TaskStore(tmp_path / "tasks").path(_square, tasks[0]).read_text())["commit"] == "aaaa"
    report = ExperimentReport({}, [], task_seconds=again.task_seconds, task_commits=again.task_commits)
    assert "more than one version of the code: aaaa (2), bbbb-dirty (3)." in report.to_markdown()
    single = ExperimentReport({}, [], task_seconds=first.task_seconds, task_commits=first.task_commits)
    assert "version of the code" not in single.to_markdown()


def test_each_task_is_on_disk_as_it_finishes_and_a_rerun_does_only_what_is_missing(tmp_path, monkeypatch, capsys):
    """A grid that dies at its third task keeps the two before it; the rerun runs the rest, reuses
    those two, and the summed task time covers both runs."""
    tasks = [{"x": x, "pause": 0.1} for x in range(5)]
    first = ExperimentOptions(out=tmp_path, progress=True)
    monkeypatch.setattr(f"{__name__}.FAIL_AT", {2})
    with pytest.raises(RuntimeError, match="task 2 failed"):
        map_tasks(_square, tasks, first)
    store = TaskStore(tmp_path / "tasks")
    assert [store.load(_square, t) is not None for t in tasks] == [True, True, False, False, False]
    assert len(first.task_seconds) == 2 and all(s >= 0.1 for s, reused in first.task_seconds if not reused)
    capsys.readouterr()

    monkeypatch.setattr(f"{__name__}.FAIL_AT", set())
    again = ExperimentOptions(out=tmp_path, progress=True)
    start = time.perf_counter()
    results = map_tasks(_square, tasks, again)
    wall = time.perf_counter() - start
    assert [r["square"] for r in results] == [x * x for x in range(5)] and math.isnan(results[0]["root"])
    assert [reused for _, reused in again.task_seconds].count(True) == 2
    total = sum(s for s, _ in again.task_seconds)  # five tasks of 0.1 s; this run did only three of them
    assert total >= 0.5 and sum(s for s, reused in again.task_seconds if reused) >= 0.2 and wall >= 0.3
    stored = [json.loads(store.path(_square, t).read_text())["seconds"] for t in tasks]
    assert total == pytest.approx(sum(stored))

    lines = capsys.readouterr().out.strip().splitlines()  # pytest's stdout is no terminal: plain lines
    assert lines[0] == "square 2/5: 2 finished by an earlier run, reused"
    assert [line.split(":")[0] for line in lines[1:]] == ["square 3/5", "square 4/5", "square 5/5"]
    assert all("elapsed, about" in line and "left" in line for line in lines[1:])
    assert lines[-1].endswith("about 0:00:00 left")


def test_overrides_follow_the_type_of_the_default():
    assert override("k", "3", 1) == 3 and override("k", "0.5", 1.0) == 0.5 and override("k", "yes", False) is True
    assert override("k", "1,2, 5", (1, 25)) == (1, 2, 5) and override("k", "[0.1, 1]", [0.5]) == [0.1, 1.0]
    assert override("k", "200", None) == 200 and override("k", "tanh", "relu") == "tanh"
    for value, default, why in (("abc", 1, "expected an integer"), ("0.5", 1, "expected an integer"),
                                ("nan", 1.0, "finite"), ("maybe", True, "true or false"), ("", (1,), "list")):
        with pytest.raises(ConfigError, match=why):
            override("k", value, default)
    options = ExperimentOptions(out=".", overrides={"steps": "20", "lr": "1e-2"})
    assert options.configure({"steps": 5, "lr": 0.1, "width": 8}) == {"steps": 20, "lr": 0.01, "width": 8}
    with pytest.raises(ConfigError, match="unknown setting 'stepz'.*known: lr, steps"):
        ExperimentOptions(out=".", overrides={"stepz": "1"}).configure({"steps": 5, "lr": 0.1})


def _experiment_names() -> list[str]:
    load_experiments()
    return sorted(EXPERIMENTS)


@pytest.mark.parametrize("name", _experiment_names())
def test_every_experiment_refuses_an_unknown_setting_before_any_work(name, tmp_path):
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["experiment", "run", name, "--quick", "--quiet", "--set", "no_such_setting=1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown setting 'no_such_setting'" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    assert time.perf_counter() - start < 20  # refused up front, not after training
    assert not (tmp_path / "tasks").exists()


def test_cli_set_device_and_bad_pairs_are_one_line_and_exit_2(tmp_path):
    runner = CliRunner()
    for args, message in ((["--set", "max_steps=abc"], "expected an integer"), (["--set", "max_steps"], "KEY=VALUE"),
                          (["--set", "max_steps=1", "--set", "max_steps=2"], "given twice"),
                          (["--device", "tpu"], "--device must be"), (["--jobs", "2", "--cluster", "local:2"], "--jobs"),
                          (["--cluster", "remote:3"], "local:N")):
        result = runner.invoke(app, ["experiment", "run", "liu-table1", "--quick", "--quiet", "--out", str(tmp_path),
                                     *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, args
    result = runner.invoke(app, ["experiment", "run", "berger-sphere", "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 2 and ("CPU only" in result.output or "CUDA is not available" in result.output)


def test_an_experiment_run_keeps_its_tasks_logs_progress_and_reports_the_summed_task_time(tmp_path):
    command = ["experiment", "run", "liu-table1", "--quick", "--reps", "1", "--set", "max_steps=6", "--set", "n=60",
               "--set", "K=2", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    batches = len(list((tmp_path / "tasks").glob("train_group-*.json")))
    assert batches >= 2 and f"batches {batches}/{batches}: " in result.output and "left" in result.output
    config = json.loads(next((tmp_path / "runs").glob("*/rep-00/config.json")).read_text())
    assert (config["max_steps"], config["n"], config["K"], config["device"]) == (6, 60, 2, "cpu")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tasks"] == batches and report["tasks_reused"] == 0 and report["task_seconds_summed"] > 0
    first_total = report["task_seconds_summed"]

    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and f"batches {batches}/{batches}: {batches} finished by an earlier run" in again.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tasks_reused"] == batches and report["task_seconds_summed"] == pytest.approx(first_total)
    assert "summed over the" in (tmp_path / "report.md").read_text()
    provenance = json.loads((tmp_path / "provenance.json").read_text())["invocations"]
    assert provenance[-1]["experiment"] == "liu-table1" and provenance[-1]["executor"] == "in process"


def test_where_a_task_keeps_its_checkpoint_is_not_part_of_its_digest():
    base = {"kind": "discrete", "seeds": [1, 2]}
    assert task_digest(len, {**base, "checkpoint_dir": "/a/x"}) == task_digest(len, {**base, "checkpoint_dir": "b/y"})
    assert task_digest(len, {**base, "checkpoint_dir": "/a/x"}) == task_digest(len, base)
    assert task_digest(len, base) != task_digest(len, {**base, "seeds": [1, 3]})


def test_stored_only_writes_the_report_from_stored_tasks_and_refuses_a_missing_one(tmp_path):
    """--stored-only trains nothing: with every task stored it writes the same table; with one missing it says so
    in one line; and --device only names the stored tasks, so CUDA need not exist on this machine."""
    command = ["experiment", "run", "liu-table1", "--quick", "--reps", "1", "--set", "max_steps=6", "--set", "n=60",
               "--set", "K=2", "--quiet", "--out", str(tmp_path)]
    assert CliRunner().invoke(app, command).exit_code == 0
    table = (tmp_path / "table1.csv").read_text()
    again = CliRunner().invoke(app, [*command, "--stored-only"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "table1.csv").read_text() == table
    assert json.loads((tmp_path / "report.json").read_text())["tasks_reused"] == json.loads(
        (tmp_path / "report.json").read_text())["tasks"]
    tasks = sorted((tmp_path / "tasks").glob("*.json"))
    tasks[0].unlink()
    missing = CliRunner().invoke(app, [*command, "--stored-only"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert f"--stored-only: 1 of {len(tasks)} tasks (batches) are not stored" in " ".join(missing.output.split())
    on_gpu = CliRunner().invoke(app, [*command, "--stored-only", "--device", "cuda"])
    assert on_gpu.exit_code == 2 and "not stored" in on_gpu.output and "CUDA is not available" not in on_gpu.output
    nothing = CliRunner().invoke(app, [*command, "--stored-only", "--out", str(tmp_path / "typo")])
    assert nothing.exit_code == 2 and "no stored tasks" in nothing.output and not (tmp_path / "typo").exists()
