"""User-supplied data: a CSV file whose columns are named x1..xp and y1..yq."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError

__all__ = ["load_csv"]


def load_csv(path: str | Path, y_columns: int | None = None) -> Dataset:
    """Read a comma-separated file with a header row.

    Columns named ``y…`` are responses and the rest are conditioning inputs; a file
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
    is_y = np.array([h.startswith("y") for h in names])
    if not is_y.any():
        k = 1 if y_columns is None else y_columns
        is_y = np.arange(len(names)) >= len(names) - k
    return Dataset(name=path.stem, x=table[:, ~is_y], y=table[:, is_y], params={"file": str(path)})
