"""Run directories: seeds, atomic JSON, tensors-only checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pyrovae.errors import DataError
from pyrovae.runs import (
    derive_seeds,
    has_checkpoint,
    load_checkpoint,
    prepare_run_dir,
    read_json,
    save_checkpoint,
    write_json,
    write_text,
)


def test_derive_seeds_deterministic_and_distinct():
    a, b = derive_seeds(0, 50), derive_seeds(0, 50)
    assert a == b and len(a) == 50 and len(set(a)) == 50
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in a)
    # prefixes agree: asking for more repetitions keeps the earlier seeds
    assert derive_seeds(0, 10) == a[:10]
    c = derive_seeds(1, 50)
    assert c != a and not set(a) & set(c)
    assert derive_seeds(3, 0) == []


def test_derive_seeds_follow_seed_sequence():
    expected = [int(s.generate_state(1, dtype=np.uint32)[0]) for s in np.random.SeedSequence(42).spawn(3)]
    assert derive_seeds(42, 3) == expected


def test_json_round_trip_and_non_finite(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json(path, {"a": 1.5, "b": float("nan"), "c": np.float32(2.0), "d": torch.tensor(3), "e": [np.int64(4)],
                      "f": tmp_path})
    data = read_json(path)
    assert data == {"a": 1.5, "b": None, "c": 2.0, "d": 3, "e": [4], "f": str(tmp_path)}
    json.loads(path.read_text())  # strict JSON: no NaN literal
    assert not list(path.parent.glob(".m.json.*"))  # no temporary files left behind


def test_read_json_errors(tmp_path):
    with pytest.raises(DataError):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError):
        read_json(bad)


def test_write_text_replaces_atomically(tmp_path):
    path = tmp_path / "h.csv"
    write_text(path, "one")
    write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["h.csv"]


def test_checkpoint_round_trip_weights_only(tmp_path):
    assert not has_checkpoint(tmp_path)
    with pytest.raises(DataError):
        load_checkpoint(tmp_path)
    net = torch.nn.Linear(3, 2)
    tensors = {"model": net.state_dict(), "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path, tensors, {"step": 7, "prev_loss": math.inf, "rows": [{"phi": math.nan}]})
    assert has_checkpoint(tmp_path)
    raw = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert torch.equal(raw["model"]["weight"], net.weight)
    back, meta = load_checkpoint(tmp_path)
    assert torch.equal(back["rng"], tensors["rng"])
    assert meta == {"step": 7, "prev_loss": None, "rows": [{"phi": None}]}


def test_prepare_run_dir(tmp_path):
    path = prepare_run_dir(tmp_path / "a" / "b")
    assert path.is_dir() and [p.name for p in path.iterdir()] == ["provenance.json"]  # no probe left behind
