"""One executor interface for every parallel map: in process, local processes, a Dask cluster."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from pyrovae.api import train, train_reps
from pyrovae.config import RunConfig
from pyrovae.errors import ConfigError
from pyrovae.executors import DaskCluster, InProcess, LocalProcesses, make_executor, parse_cluster
from pyrovae.experiments.registry import ExperimentOptions
from pyrovae.experiments.runner import run_grid
from pyrovae.runs import derive_seeds
from pyrovae.validation import integer_at_least


def test_the_command_line_choice_of_executor():
    assert isinstance(make_executor(), InProcess)
    assert isinstance(make_executor(jobs=3), LocalProcesses) and make_executor(jobs=3).jobs == 3
    assert parse_cluster("local:4") == 4
    for kwargs, message in (({"jobs": 2, "cluster": "local:2"}, "--jobs"),
                            ({"scheduler": "tcp://h:1", "cluster": "local:2"}, "not both"),
                            ({"cluster": "local:0"}, ">= 1"), ({"cluster": "local"}, "local:N"),
                            ({"scheduler": " "}, "address"), ({"jobs": 0}, "--jobs")):
        with pytest.raises(ConfigError, match=message):
            make_executor(**kwargs)


def test_without_dask_the_cluster_back_end_is_one_line_with_the_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'pyrovae\[cluster\]'"):
        make_executor(cluster="local:2")


def test_in_process_yields_each_result_with_its_own_time():
    done = list(InProcess().run(derive_seeds, [{"root": 1, "count": 2}, {"root": 2, "count": 1}]))
    assert [d.index for d in done] == [0, 1] and done[1].result == derive_seeds(2, 1)
    assert all(d.seconds >= 0 for d in done)


@pytest.fixture(scope="module")
def dask_cluster():
    pytest.importorskip("distributed", reason="the Dask back end is the optional extra pyrovae[cluster]")
    with make_executor(cluster="local:2") as executor:
        yield executor


def test_a_dask_local_cluster_runs_tasks_with_one_torch_thread_each(dask_cluster):
    assert isinstance(dask_cluster, DaskCluster) and dask_cluster.description == "Dask LocalCluster of 2 workers"
    tasks = [{"root": r, "count": 3} for r in range(4)]
    done = sorted(dask_cluster.run(derive_seeds, tasks), key=lambda d: d.index)
    assert [d.result for d in done] == [derive_seeds(r, 3) for r in range(4)]
    threads = list(dask_cluster.run(torch.get_num_threads, [{}, {}]))
    assert [d.result for d in threads] == [1, 1]
    with pytest.raises(ConfigError, match="must be an integer"):  # a task's own error comes back as itself
        list(dask_cluster.run(integer_at_least, [{"name": "count", "value": 0.5}]))


def test_an_experiment_grid_on_a_dask_cluster_equals_the_grid_in_process(dask_cluster, tmp_path):
    """The same grid, unchanged, on the cluster: each batch a Dask task, the same numbers."""
    base = RunConfig(n=80, max_steps=12, K=3, tol=0.0, algorithm="calibrated", calibration="paper", C=0.5)
    configs = {"K3": base, "K4": base.replace(K=4), "K3 s0=2": base.replace(sigma0=2.0)}
    local = run_grid(configs, 1, ExperimentOptions(out=tmp_path / "local", seed=7), tmp_path / "local" / "runs")
    options = ExperimentOptions(out=tmp_path / "dask", seed=7, executor=dask_cluster)
    remote = run_grid(configs, 1, options, tmp_path / "dask" / "runs")
    assert len(options.task_seconds) == 2  # K = 3 (both σ₀) and K = 4: two batches, two tasks
    for label in configs:
        for a, b in zip(local[label], remote[label]):
            assert a["seed"] == b["seed"] and a["steps"] == b["steps"] == 12
            assert b["sigma"] == pytest.approx(a["sigma"], rel=1e-5) and b["kl"] == pytest.approx(a["kl"], rel=1e-4)
    assert (tmp_path / "dask" / "runs" / "K4" / "rep-00" / "metrics.json").is_file()


def test_train_reps_one_run_per_task_on_any_executor(dask_cluster, tmp_path):
    """The process path of train_reps on the Dask cluster: each repetition equals train() of its seed."""
    cfg = RunConfig(n=80, max_steps=10, K=5, tol=0.0, algorithm="calibrated", calibration="paper", C=0.5, seed=3)
    summary = train_reps(cfg, 2, 1, tmp_path / "reps", vectorize=False, executor=dask_cluster)
    assert not summary["vectorized"] and summary["seeds"] == derive_seeds(3, 2)
    for row in summary["runs"]:
        alone = train(cfg.replace(seed=row["seed"]), plots=False).metrics
        assert row["steps"] == alone["steps"] and row["sigma"] == pytest.approx(alone["sigma"], rel=1e-5)
    assert (tmp_path / "reps" / "rep-01" / "metrics.json").is_file()
