"""User-supplied data: a CSV file (header row) or a NumPy ``.npy`` array, read for the model kind.

* σ-CVAE (:func:`load_csv`): columns named ``x1..xp`` (conditioning) and ``y1..yq`` (responses);
  a ``.npy`` array's last column is the response.
* Unconditional VAE, linear, Cholesky (:func:`load_columns`): every column is data.
* M2 (:func:`load_labelled`): a ``label`` column, empty / NaN where a point is unlabelled.

:func:`load_file` picks the reader for a kind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError

__all__ = ["load_csv", "load_columns", "load_labelled", "load_file"]


def load_csv(path: str | Path, y_columns: int | None = None, x_cols: Sequence[str] | None = None,
             y_cols: Sequence[str] | None = None) -> Dataset:
    """Read a comma-separated file with a header row.

    ``y_cols`` / ``x_cols`` name the response and conditioning columns (either one alone takes
    the other columns for the other role). Without them, columns named ``y``, ``y1``, ``y2``, … are
    responses and the rest are conditioning inputs (a "year" or "yield" column is an input); a file
    without such names takes its last ``y_columns`` columns (default 1) as responses.
    Missing, empty or header-only files, unreadable numbers, NaN and ragged rows raise
    :class:`DataError` (one line, no numpy warning).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; expected a CSV with one header row") from None
    if not lines:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    if len(lines) == 1:
        raise DataError(f"{path}: the file has a header row but no data rows")
    header = lines[0].strip().split(",")
    try:
        table = np.loadtxt(lines[1:], delimiter=",", ndmin=2)  # rows checked above: numpy warns on none
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric CSV with one header row ({exc})") from None
    if table.shape[1] != len(header):
        raise DataError(f"{path}: header names {len(header)} columns but rows have {table.shape[1]}")
    if np.isnan(table).any():
        raise DataError(f"{path}: contains NaN values")
    names = [h.strip().lower() for h in header]
    if x_cols is not None or y_cols is not None:
        x_index, y_index = _chosen_columns(path, names, x_cols, y_cols)
        return Dataset(name=path.stem, condition=table[:, x_index], observed=table[:, y_index], params={"file": str(path)})
    is_y = np.array([re.fullmatch(r"y\d*", h) is not None for h in names])
    if not is_y.any():
        k = 1 if y_columns is None else y_columns
        is_y = np.arange(len(names)) >= len(names) - k
    return Dataset(name=path.stem, condition=table[:, ~is_y], observed=table[:, is_y], params={"file": str(path)})


def _chosen_columns(path: Path, names: list[str], x_cols, y_cols) -> tuple[list[int], list[int]]:
    """Indices of the named x and y columns (case and surrounding spaces ignored); a role left
    unnamed takes every other column."""
    def indices(role: str, wanted) -> list[int]:
        out = []
        for name in wanted:
            key = str(name).strip().lower()
            if key not in names:
                raise DataError(f"{path}: no column {name!r} for {role}; columns: {', '.join(names)}")
            out.append(names.index(key))
        return out

    y_index = indices("--y-cols", y_cols) if y_cols is not None else None
    x_index = indices("--x-cols", x_cols) if x_cols is not None else None
    if y_index is None:
        y_index = [j for j in range(len(names)) if j not in x_index]
    if x_index is None:
        x_index = [j for j in range(len(names)) if j not in y_index]
    if not y_index:
        raise DataError(f"{path}: no response column left; name one with --y-cols")
    if set(x_index) & set(y_index):
        raise DataError(f"{path}: column {names[sorted(set(x_index) & set(y_index))[0]]!r} is in both --x-cols and --y-cols")
    return x_index, y_index


def _read_table(path: Path, allow_missing: str | None = None) -> tuple[list[str], np.ndarray]:
    """Column names and a float matrix from a CSV with a header row or a 2-D NumPy ``.npy`` array
    (columns ``c1..cp``, the last called ``label`` when ``allow_missing`` asks for it). Empty cells
    and NaN are refused, except in the column ``allow_missing`` names."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix == ".npy":
        try:
            table = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a NumPy array file ({str(exc).splitlines()[0][:100]})") from None
        if table.ndim == 1:
            table = table[:, None]
        if table.ndim != 2 or table.shape[0] < 2 or not np.issubdtype(table.dtype, np.number):
            raise DataError(f"{path}: expected a numeric (n, columns) array with n >= 2, got {table.dtype} {table.shape}")
        names = [f"c{i + 1}" for i in range(table.shape[1])]
        if allow_missing is not None:
            names[-1] = allow_missing
        table = table.astype(np.float64)
    else:
        import pandas as pd

        try:
            frame = pd.read_csv(path, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a CSV with one header row ({str(exc).splitlines()[0][:100]})") from None
        if len(frame) < 2:
            raise DataError(f"{path}: needs a header row and at least 2 data rows")
        try:
            table = frame.to_numpy(dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: not a numeric CSV ({exc})") from None
        names = [str(c).strip().lower() for c in frame.columns]
    for j, name in enumerate(names):
        if name != allow_missing and not np.isfinite(table[:, j]).all():
            raise DataError(f"{path}: column {name!r} has empty, NaN or infinite values")
    return names, table


def load_columns(path: str | Path) -> Dataset:
    """Unconditional data: every column of a CSV (header row) or ``.npy`` file is modelled
    (``y``; no conditioning columns), as the VAE, linear and Cholesky models expect."""
    path = Path(path)
    names, table = _read_table(path)
    return Dataset(name=path.stem, condition=np.zeros((len(table), 0)), observed=table, params={"file": str(path), "columns": names})


def load_labelled(path: str | Path, label: str = "label"):
    """Semi-supervised data for M2: the column ``label`` (the last column of a ``.npy`` file) holds
    class labels, empty or NaN where a point is unlabelled; every other column is a point's coordinate.

    Labels may be any numbers; the K distinct observed values become classes 0..K-1 in sorted order
    (``params["classes"]`` keeps the values). At least two classes and one unlabelled and one labelled
    point are needed (M2 trains on both kinds)."""
    from pyrovae.data.yacoby_m2 import SemiSupervisedDataset

    path = Path(path)
    names, table = _read_table(path, allow_missing=label)
    if label not in names:
        raise DataError(f"{path}: M2 needs a column named {label!r} (class labels, empty where unlabelled); "
                        f"columns: {', '.join(names)}")
    j = names.index(label)
    labels = table[:, j]
    points = np.delete(table, j, axis=1)
    if points.shape[1] < 1:
        raise DataError(f"{path}: no data columns besides {label!r}")
    labelled = np.isfinite(labels)
    classes = np.unique(labels[labelled])
    if len(classes) < 2:
        raise DataError(f"{path}: M2 needs at least two label values among the labelled points, got {len(classes)}")
    if labelled.all() or not labelled.any():
        raise DataError(f"{path}: M2 needs both labelled and unlabelled points (leave a label empty for unlabelled)")
    index = np.where(labelled, np.searchsorted(classes, np.where(labelled, labels, classes[0])), 0)
    return SemiSupervisedDataset(path.stem, np.zeros((len(table), 0)), points,
                                 params={"file": str(path), "classes": classes.tolist(),
                                         "columns": [n for n in names if n != label]},
                                 labels=torch.as_tensor(index, dtype=torch.get_default_dtype()),
                                 labelled=torch.as_tensor(labelled))


def load_file(path: str | Path, model: str = "cvae", x_cols: Sequence[str] | None = None,
              y_cols: Sequence[str] | None = None) -> Dataset:
    """The user's file read as model kind ``model`` needs it (module docstring); ``x_cols`` /
    ``y_cols`` choose the σ-CVAE's columns of a CSV by name."""
    path = Path(path)
    if (x_cols is not None or y_cols is not None) and (model != "cvae" or path.suffix == ".npy"):
        raise DataError("--x-cols / --y-cols choose the columns of a CSV for the σ-CVAE (--model cvae); "
                        "the other kinds model every column")
    if model == "m2":
        return load_labelled(path)
    if model != "cvae":
        return load_columns(path)
    if path.suffix == ".npy":
        names, table = _read_table(path)
        if table.shape[1] < 1:
            raise DataError(f"{path}: no columns")
        return Dataset(name=path.stem, condition=table[:, :-1], observed=table[:, -1:], params={"file": str(path)})
    return load_csv(path, x_cols=x_cols, y_cols=y_cols)
