"""Run directories: atomic writes, seeds, and tensors-only checkpoints.

A run directory holds ``provenance.json`` (what produced it: :func:`write_provenance`),
``config.json`` (resolved settings), ``history.csv``,
``metrics.json``, ``checkpoint/`` (``state.pt``: state dicts and RNG state, loaded with
``weights_only=True``; ``state.json``: loop counters and algorithm state; ``manifest.json``: the
step and a SHA-256 of each part) and ``plots/``. A checkpoint is written and replaced as one unit
(:func:`save_checkpoint`), and verified against its manifest before it is loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from pyrovae.errors import CheckpointError, DataError, PyrovaeError, RunDirLocked

__all__ = [
    "prepare_run_dir",
    "write_provenance",
    "provenance",
    "write_json",
    "read_json",
    "final_sigma",
    "write_text",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "checkpoint_dir",
    "discard_checkpoint",
    "data_digest",
    "check_same_data",
    "lock_run_dir",
    "derive_seeds",
]


def prepare_run_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check it is writable (one clear error if not); record this
    process in its ``provenance.json`` (:func:`write_provenance`)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe", delete=True)
        probe.close()
    except OSError as exc:
        raise PyrovaeError(f"output directory {path} is not writable: {exc.strerror or exc}") from exc
    write_provenance(path)
    return path


#: The packages whose versions decide a run's numbers.
PROVENANCE_PACKAGES = ("pyrovae", "torch", "pyro-ppl", "numpy", "arviz", "scipy")
_STAMPED: dict[Path, dict[str, Any]] = {}  # directory -> this process's record in it


def write_provenance(run_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Add what produced ``run_dir`` to its ``provenance.json``: one record per process that wrote
    there (a resumed run has several), each with the time, the command line (``sys.argv``), the
    host, the process id, the Python and package versions, the git commit of the package's checkout
    (``None`` outside one; ``dirty`` when tracked files differ from it), torch's thread count and
    ``OMP_NUM_THREADS``; ``extra`` is merged into this process's record. Returns the file's path."""
    run_dir = Path(run_dir)
    path = run_dir / "provenance.json"
    key = run_dir.resolve()
    record = _STAMPED.get(key)
    if record is None:
        record = _STAMPED[key] = provenance()
        previous = _read_invocations(path)
    else:
        previous = _read_invocations(path)[:-1]  # our own record is the last one
    record.update(extra or {})
    write_json(path, {"invocations": previous + [record]})
    return path


def _read_invocations(path: Path) -> list:
    try:
        invocations = json.loads(path.read_text()).get("invocations", [])
    except (OSError, ValueError, AttributeError):
        return []
    return invocations if isinstance(invocations, list) else []


def provenance() -> dict[str, Any]:
    """This process, now: see :func:`write_provenance`."""
    import platform
    import sys
    import time

    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": list(sys.argv),
            "host": platform.node(), "pid": os.getpid(), "python": platform.python_version(),
            "packages": _package_versions(), "git": _git_commit(),
            "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}}


@functools.cache
def _package_versions() -> dict[str, str | None]:
    from importlib import metadata

    import pyrovae

    versions = {"pyrovae": pyrovae.__version__}
    for name in PROVENANCE_PACKAGES[1:]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_commit() -> str:
    """The package's commit for a record of what produced a result: the first 12 hex digits, with
    ``-dirty`` when tracked files were changed, or ``unknown`` (:func:`_git_commit`)."""
    git = _git_commit()
    if git is None:
        return "unknown"
    return git["commit"][:12] + ("-dirty" if git["dirty"] else "")


@functools.cache
def _git_commit() -> dict[str, Any] | None:
    """The commit of the git checkout this package is imported from (``git rev-parse``), or None
    (no git, not a checkout, or a checkout that merely contains an installed copy)."""
    import subprocess

    package = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise OSError(done.stderr.strip())
        return done.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() / package.name != package:
            return None
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


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


#: Names inside a run directory. ``checkpoint/`` is the one current checkpoint; ``checkpoint.prev/``
#: the one before it; ``checkpoint.tmp-*`` one being written (or left by a killed writer).
CHECKPOINT, PREVIOUS, TEMPORARY = "checkpoint", "checkpoint.prev", "checkpoint.tmp-"
_PARTS = ("state.pt", "state.json")
_FORMAT = 1


def final_sigma(run_dir: str | Path) -> float:
    """A finished run's final σ (``metrics.json``'s ``sigma``), e.g. for Berger & Sebag's (2020) F*-VAE."""
    metrics = read_json(Path(run_dir) / "metrics.json")
    if not isinstance(metrics, dict) or metrics.get("sigma") is None:
        raise DataError(f"{run_dir}/metrics.json has no final 'sigma'")
    return float(metrics["sigma"])


def save_checkpoint(run_dir: str | Path, tensors: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``tensors`` (``state.pt``) and ``state`` (``state.json``) as one unit.

    Both parts and ``manifest.json`` (the step and a SHA-256 of each part) are written and fsynced
    in a fresh ``checkpoint.tmp-*`` directory, which then replaces ``checkpoint/`` by renames
    alone: ``checkpoint`` → ``checkpoint.prev``, then the new directory → ``checkpoint``. A kill at
    any moment leaves either the old or the new checkpoint whole (:func:`checkpoint_dir` finds it);
    never a mix of two steps. Leftover temporary directories of killed writers are removed."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(run_dir)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=TEMPORARY))
    try:
        blobs = {"state.pt": _torch_bytes(tensors),
                 "state.json": (json.dumps(_jsonable(state), indent=1) + "\n").encode()}
        manifest = {"format": _FORMAT, "step": state.get("step"),
                    "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}}
        blobs["manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode()  # last: it vouches for the rest
        for name, blob in blobs.items():
            _write_synced(tmp / name, blob)
        _fsync_dir(tmp)
        current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
        if current.is_dir():
            if previous.exists():  # out of the way by one rename; deleted below
                previous.rename(Path(tempfile.mkdtemp(dir=run_dir, prefix=TEMPORARY)) / "old")
            current.rename(previous)
        tmp.rename(current)
        _fsync_dir(run_dir)
    finally:
        _remove_temporaries(run_dir)


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint, whole or not: a damaged one must be refused, not
    silently replaced by a fresh start."""
    return checkpoint_dir(run_dir) is not None


def checkpoint_dir(run_dir: str | Path) -> Path | None:
    """The current checkpoint: ``checkpoint/``, or ``checkpoint.prev/`` when a writer was killed
    between its two renames (the old checkpoint is then the last whole one)."""
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(run_dir) / name
        if path.is_dir():
            return path
    return None


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Load the checkpoint of ``run_dir`` after checking it against its manifest.

    Tensors are loaded without unpickling objects (``weights_only=True``). A missing, torn or
    damaged checkpoint raises :class:`~pyrovae.errors.CheckpointError` with one line that says what
    to do; torch's own advice (to load with ``weights_only=False``) is never passed on."""
    ckpt = checkpoint_dir(run_dir)
    if ckpt is None:
        raise CheckpointError(f"no checkpoint in {run_dir}")
    try:
        manifest = json.loads((ckpt / "manifest.json").read_bytes())
        blobs = {name: (ckpt / name).read_bytes() for name in _PARTS}
    except (OSError, ValueError) as exc:
        raise _damaged(ckpt, f"missing or unreadable part ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT or not isinstance(manifest.get("files"), dict):
        raise _damaged(ckpt, "manifest.json is not a pyrovae checkpoint manifest")
    for name, blob in blobs.items():
        if manifest["files"].get(name) != hashlib.sha256(blob).hexdigest():
            raise _damaged(ckpt, f"{name} does not match its checksum in manifest.json")
    try:
        state = json.loads(blobs["state.json"])
        tensors = torch.load(io.BytesIO(blobs["state.pt"]), map_location=map_location, weights_only=True)
    except Exception:  # torch, zipfile and pickle each raise their own; none is actionable here
        raise _damaged(ckpt, "state.pt or state.json cannot be read as tensors-only data") from None
    if not isinstance(state, dict) or not isinstance(tensors, dict) or state.get("step") != manifest.get("step"):
        raise _damaged(ckpt, "its parts disagree with manifest.json")
    return tensors, state


def discard_checkpoint(run_dir: str | Path) -> None:
    """Remove every checkpoint of ``run_dir`` (``--restart``)."""
    for name in (CHECKPOINT, PREVIOUS):
        shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
    _remove_temporaries(Path(run_dir))


def _damaged(ckpt: Path, why: str) -> CheckpointError:
    previous = ckpt.parent / PREVIOUS
    fallback = (f", or resume from the previous checkpoint by moving {previous} to {ckpt}"
                if ckpt.name == CHECKPOINT and previous.is_dir() else "")
    return CheckpointError(f"damaged checkpoint {ckpt}: {why}; start over with --restart{fallback}")


def _torch_bytes(tensors: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def _write_synced(path: Path, blob: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_temporaries(run_dir: Path) -> None:
    for tmp in run_dir.glob(TEMPORARY + "*"):
        shutil.rmtree(tmp, ignore_errors=True)


def data_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' dtypes, shapes and values: what a run was trained on."""
    digest = hashlib.sha256()
    for t in tensors:
        array = t.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_same_data(run_dir: str | Path, digest: str) -> None:
    """Record ``digest`` in ``run_dir/data.json``; refuse to resume a checkpoint on other data
    (a ``--data-file`` edited between two runs would otherwise continue on the new rows)."""
    path = Path(run_dir) / "data.json"
    if has_checkpoint(run_dir) and path.is_file():
        record = read_json(path)
        old = record.get("sha256") if isinstance(record, dict) else None
        if old != digest:
            raise CheckpointError(f"{run_dir} was checkpointed on other data (sha256 {str(old)[:12]}…, now "
                                  f"{digest[:12]}…); start over with --restart or choose another --out")
    write_json(path, {"sha256": digest})


_HELD: set[Path] = set()  # run directories this process has locked


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path | None) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (``fcntl.flock``, holding our PID) while a run writes there, so a second
    writer is refused instead of both doing the work. The kernel drops the lock of a process that
    dies, so a lock left by a killed run is simply taken over. Re-entrant within one process;
    ``None`` (no run directory) locks nothing."""
    key = Path(run_dir).resolve() if run_dir is not None else None
    if key is None or key in _HELD:
        yield
        return
    handle = open(key / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            raise RunDirLocked(f"{run_dir} is being written by another pyrovae process (PID {pid}); wait for it "
                               "to finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        handle.close()


def derive_seeds(root: int, count: int) -> list[int]:
    """Independent per-repetition seeds from one root (``numpy.random.SeedSequence``)."""
    children = np.random.SeedSequence(int(root)).spawn(int(count))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]
