"""Provenance: every run and experiment directory says what produced it."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import torch

import pyrovae
from pyrovae import runs
from pyrovae.api import train
from pyrovae.config import RunConfig


def _invocations(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "provenance.json").read_text())["invocations"]


def test_a_trained_run_records_versions_commit_command_host_and_threads(tmp_path):
    train(RunConfig(n=60, K=2, max_steps=4), out=tmp_path / "run", plots=False)
    record = _invocations(tmp_path / "run")[-1]
    assert record["packages"]["torch"] == torch.__version__ and record["packages"]["pyro-ppl"] == pyro.__version__
    assert record["packages"]["numpy"] == np.__version__ and record["packages"]["pyrovae"] == pyrovae.__version__
    assert record["packages"]["arviz"] is not None
    assert record["command"] == sys.argv and record["host"] == platform.node()
    assert record["threads"]["torch"] == torch.get_num_threads() >= 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["time"])
    package = Path(pyrovae.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the tests run from a git checkout (CI: a fresh clone)
        assert record["git"]["commit"] == head.stdout.strip() and isinstance(record["git"]["dirty"], bool)


def test_each_process_that_writes_a_directory_adds_its_own_record(tmp_path, monkeypatch):
    runs.prepare_run_dir(tmp_path)
    runs.write_provenance(tmp_path, {"experiment": "x"})  # the same process: its record, completed
    assert len(_invocations(tmp_path)) == 1 and _invocations(tmp_path)[0]["experiment"] == "x"
    monkeypatch.setattr(runs, "_STAMPED", {})  # as a second process (a resumed run) sees it
    runs.prepare_run_dir(tmp_path)
    first, second = _invocations(tmp_path)
    assert first["experiment"] == "x" and "experiment" not in second and second["pid"] == first["pid"]


def test_no_git_or_no_checkout_is_no_commit_and_no_error(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert runs._git_commit.__wrapped__() is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 128, "", "not a git repository"))
    assert runs._git_commit.__wrapped__() is None


def test_code_commit_is_a_short_hash_marked_dirty_or_unknown(monkeypatch):
    monkeypatch.setattr(runs, "_git_commit", lambda: {"commit": "0123456789abcdef0123", "dirty": False})
    assert runs.code_commit() == "0123456789ab"
    monkeypatch.setattr(runs, "_git_commit", lambda: {"commit": "0123456789abcdef0123", "dirty": True})
    assert runs.code_commit() == "0123456789ab-dirty"
    monkeypatch.setattr(runs, "_git_commit", lambda: None)
    assert runs.code_commit() == "unknown"
