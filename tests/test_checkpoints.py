"""A checkpoint is one unit: written whole or not at all, verified before it is loaded, and a
torn, damaged or hostile one is refused in one line that says what to do (issue 13, items 1, 5-7)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from pyrovae.errors import CheckpointError
from pyrovae.runs import checkpoint_dir, discard_checkpoint, has_checkpoint, load_checkpoint, save_checkpoint


def _save(run_dir, step):
    save_checkpoint(run_dir, {"w": torch.full((3,), float(step))}, {"step": step})


def _refusal(run_dir) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run_dir)
    message = str(info.value)
    assert "\n" not in message and "weights_only=False" not in message
    assert "damaged checkpoint" in message and "--restart" in message
    return message


def test_a_checkpoint_is_a_directory_with_a_manifest_and_the_previous_one_beside_it(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    ckpt = tmp_path / "checkpoint"
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["step"] == 2
    for name in ("state.pt", "state.json"):
        assert manifest["files"][name] == hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.prev"]
    assert json.loads((tmp_path / "checkpoint.prev" / "state.json").read_text())["step"] == 1
    tensors, state = load_checkpoint(tmp_path)
    assert state == {"step": 2} and torch.equal(tensors["w"], torch.full((3,), 2.0))


def test_leftover_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / "checkpoint.tmp-dead").mkdir()
    (tmp_path / "checkpoint.tmp-dead" / "state.pt").write_bytes(b"half")
    _save(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_kill_between_the_two_renames_resumes_from_the_previous_whole_checkpoint(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.tmp-new")  # as if killed before the last rename
    assert checkpoint_dir(tmp_path) == tmp_path / "checkpoint.prev"
    assert load_checkpoint(tmp_path)[1] == {"step": 1}
    _save(tmp_path, 3)
    assert load_checkpoint(tmp_path)[1] == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.prev"]


def test_torn_checkpoint_is_refused_and_names_the_previous_one(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    (tmp_path / "checkpoint" / "state.json").write_text(json.dumps({"step": 3}))  # a part from another step
    message = _refusal(tmp_path)
    assert "checksum" in message and str(tmp_path / "checkpoint.prev") in message


@pytest.mark.parametrize("damage", ["empty state.pt", "truncated state.pt", "no state.json", "no manifest",
                                    "manifest not json", "bad json"])
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, damage):
    _save(tmp_path, 1)
    ckpt = tmp_path / "checkpoint"
    pt = ckpt / "state.pt"
    if damage == "empty state.pt":
        pt.write_bytes(b"")
    elif damage == "truncated state.pt":
        pt.write_bytes(pt.read_bytes()[:100])
    elif damage == "no state.json":
        (ckpt / "state.json").unlink()
    elif damage == "no manifest":
        (ckpt / "manifest.json").unlink()
    elif damage == "manifest not json":
        (ckpt / "manifest.json").write_bytes(b"\x00\xff")
    else:  # a part that matches its checksum but is not JSON
        (ckpt / "state.json").write_text("{oops")
        _rewrite_manifest(ckpt)
    assert has_checkpoint(tmp_path)  # a damaged checkpoint is never mistaken for no checkpoint
    _refusal(tmp_path)


class _Hostile:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_hostile_pickle_with_a_matching_manifest_is_refused_without_torch_advice(tmp_path, capsys):
    _save(tmp_path, 1)
    ckpt = tmp_path / "checkpoint"
    torch.save({"x": _Hostile()}, ckpt / "state.pt")
    _rewrite_manifest(ckpt)
    _refusal(tmp_path)
    assert "pwned" not in capsys.readouterr().out


def test_discard_removes_every_checkpoint(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    discard_checkpoint(tmp_path)
    assert not has_checkpoint(tmp_path) and list(tmp_path.iterdir()) == []


def _rewrite_manifest(ckpt):
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
