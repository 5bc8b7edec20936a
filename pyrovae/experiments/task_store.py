"""Finished experiment tasks on disk: one JSON file per task, written as the task ends, read back on rerun.

A task is ``fn(**task)``; its file ``<dir>/<fn name>-<digest>.json`` is named by a SHA-256 of the
function's import path and its arguments (tensors, arrays and dataclasses by content), so a
changed setting is a new task and an unchanged one is reused. The file holds the result, the
task's own wall time (``seconds``, measured in its worker), when it finished and the package's
commit that computed it (:func:`~pyrovae.runs.code_commit`; ``unknown`` in files written before
the commit was recorded). The commit is not part of the name: a rerun after a code change reuses
the task, and the report says which commits its tasks came from. Results are
stored as strict JSON: non-finite floats, tensors and arrays are tagged so they read back as they
were (NaN stays NaN, a tensor stays a tensor); tuples read back as lists. Every result, fresh or
reused, goes through the same round trip, so a rerun computes with exactly what a first run did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pyrovae.runs import code_commit, write_text

__all__ = ["TaskStore", "StoredTask", "encode", "decode", "task_digest"]


def encode(value: Any) -> Any:
    """``value`` as strict JSON (see the module docstring); TypeError for anything else."""
    if isinstance(value, np.generic):  # before float: numpy's float64 is a float
        return encode(value.item())
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return {"__tensor__": encode(value.detach().cpu().tolist()), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": encode(value.tolist()), "dtype": str(value.dtype)}
    raise TypeError(f"a task result of type {type(value).__name__} cannot be stored as JSON")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__tensor__" in value:
        return torch.tensor(decode(value["__tensor__"]), dtype=getattr(torch, value["dtype"]))
    if "__ndarray__" in value:
        return np.array(decode(value["__ndarray__"]), dtype=value["dtype"])
    return {k: decode(v) for k, v in value.items()}


def _canonical(value: Any) -> Any:
    """What identifies an argument: its content (tensors by dtype, shape and a hash of their bytes)."""
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous().numpy()
        return {"tensor": str(array.dtype), "shape": list(array.shape), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    if isinstance(value, np.ndarray):
        return _canonical(torch.from_numpy(np.ascontiguousarray(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__qualname__,
                **{f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return encode(value)


#: task arguments that say where a task keeps its own files, not what it computes: not part of its digest (an
#: experiment rerun from another working directory, or with its output moved, still finds its tasks)
LOCATION_ARGUMENTS = ("checkpoint_dir",)


def task_digest(fn: Callable[..., Any], task: dict) -> str:
    """SHA-256 of ``fn``'s import path and the content of ``task`` (less :data:`LOCATION_ARGUMENTS`)."""
    content = {k: v for k, v in task.items() if k not in LOCATION_ARGUMENTS}
    key = {"fn": f"{fn.__module__}.{fn.__qualname__}", "task": _canonical(content)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class StoredTask:
    result: Any
    seconds: float
    reused: bool  # read back from an earlier run
    commit: str = "unknown"  # the package's commit that computed it


class TaskStore:
    """The finished tasks under ``directory`` (created on the first write)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, fn: Callable[..., Any], task: dict) -> Path:
        return self.directory / f"{fn.__name__.strip('_')}-{task_digest(fn, task)[:20]}.json"

    def load(self, fn: Callable[..., Any], task: dict) -> StoredTask | None:
        """The stored result of ``fn(**task)``, or None (not run yet, or a file that cannot be read:
        the task then runs again and replaces it)."""
        path = self.path(fn, task)
        try:
            record = json.loads(path.read_text())
            return StoredTask(decode(record["result"]), float(record["seconds"]), reused=True,
                              commit=str(record.get("commit", "unknown")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, fn: Callable[..., Any], task: dict, result: Any, seconds: float) -> StoredTask:
        """Write the result of ``fn(**task)`` (atomically); returns it as a rerun will read it."""
        encoded = encode(result)
        record = {"function": f"{fn.__module__}.{fn.__qualname__}", "seconds": seconds,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": code_commit(), "result": encoded}
        write_text(self.path(fn, task), json.dumps(record, allow_nan=False) + "\n")
        return StoredTask(decode(encoded), seconds, reused=False, commit=record["commit"])
