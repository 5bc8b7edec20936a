"""Run directories: atomic writes, seeds, and tensors-only checkpoints.

A run directory holds ``config.json`` (resolved settings), ``history.csv``,
``metrics.json``, ``checkpoint/`` (``state.pt``: state dicts and RNG state, loaded with
``weights_only=True``; ``state.json``: loop counters and algorithm state) and ``plots/``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.errors import DataError, PyrovaeError

__all__ = [
    "prepare_run_dir",
    "write_json",
    "read_json",
    "write_text",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "derive_seeds",
]


def prepare_run_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check it is writable; one clear error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe", delete=True)
        probe.close()
    except OSError as exc:
        raise PyrovaeError(f"output directory {path} is not writable: {exc.strerror or exc}") from exc
    return path


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Any) -> None:
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    _atomic_write(Path(path), lambda h: h.write(text.encode()))


def write_text(path: str | Path, text: str) -> None:
    _atomic_write(Path(path), lambda h: h.write(text.encode()))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def save_checkpoint(run_dir: str | Path, tensors: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``checkpoint/state.pt`` (tensors and state dicts) then ``state.json``, each atomically."""
    ckpt = Path(run_dir) / "checkpoint"
    _atomic_write(ckpt / "state.pt", lambda h: torch.save(tensors, h))
    write_json(ckpt / "state.json", state)


def has_checkpoint(run_dir: str | Path) -> bool:
    ckpt = Path(run_dir) / "checkpoint"
    return (ckpt / "state.pt").is_file() and (ckpt / "state.json").is_file()


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Load a checkpoint without unpickling objects (``weights_only=True``)."""
    ckpt = Path(run_dir) / "checkpoint"
    if not has_checkpoint(run_dir):
        raise DataError(f"no checkpoint in {run_dir}")
    tensors = torch.load(ckpt / "state.pt", map_location=map_location, weights_only=True)
    return tensors, read_json(ckpt / "state.json")


def derive_seeds(root: int, count: int) -> list[int]:
    """Independent per-repetition seeds from one root (``numpy.random.SeedSequence``)."""
    children = np.random.SeedSequence(int(root)).spawn(int(count))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]
