"""One thread policy for every command: ``pyrovae --threads N`` (default 1) sets torch's threads
for the command and, through the environment, for the processes it starts."""

from __future__ import annotations

import os

import pytest
import torch

from tests.cli.cli_helpers import assert_one_error_line, invoke


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads(), {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    yield
    torch.set_num_threads(before[0])
    for key, value in before[1].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_every_command_runs_on_one_thread_unless_asked(restore_threads):
    torch.set_num_threads(2)
    assert invoke("datasets", "list").exit_code == 0
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert invoke("--threads", "2", "datasets", "list").exit_code == 0
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"


def test_a_process_the_command_starts_inherits_one_thread(restore_threads):
    """Even where the environment asked for two (a worker of `--jobs`, a Dask worker started by
    the command, a spawned process pool)."""
    import subprocess
    import sys

    os.environ["OMP_NUM_THREADS"] = "2"
    invoke("datasets", "list")
    code = "import torch; print(torch.get_num_threads())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=os.environ.copy()).stdout.strip() == "1"


@pytest.mark.parametrize("value", ["0", "-1"])
def test_an_impossible_thread_count_is_one_line(value, restore_threads):
    assert_one_error_line(invoke("--threads", value, "datasets", "list"), "--threads", "integer >= 1")


def test_a_thread_count_that_is_no_number_is_a_usage_error(restore_threads):
    result = invoke("--threads", "two", "datasets", "list")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_train_runs_with_the_threads_the_command_line_chose(tmp_path, restore_threads):
    import json

    out = tmp_path / "run"
    result = invoke("--threads", "2", "train", "--n", "40", "--max-steps", "10", "-K", "5", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["threads"] == 2
    result = invoke("--threads", "2", "train", "--n", "40", "--max-steps", "10", "-K", "5", "--quiet",
                    "--threads", "1", "--out", tmp_path / "own")
    assert json.loads((tmp_path / "own" / "config.json").read_text())["threads"] == 1  # the command's own flag wins
