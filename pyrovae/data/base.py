"""The dataset object every generator and loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.errors import DataError

__all__ = ["Dataset"]


@dataclass
class Dataset:
    r"""Conditioning inputs ``x`` (n, p), responses ``y`` (n, q) and the known truth.

    ``truth`` carries what the generator knows and a learner should recover, for
    example ``{"sigma": 0.1}`` for two-moon (the noise standard deviation).
    ``x`` may have zero columns for unconditional data.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    truth: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = _as_matrix(self.x, "x")
        self.y = _as_matrix(self.y, "y")
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")
        if self.y.shape[0] < 2 or self.y.shape[1] < 1:
            raise DataError(f"need at least 2 rows and 1 response column, got y of shape {tuple(self.y.shape)}")
        for label, t in (("x", self.x), ("y", self.y)):
            if not torch.isfinite(t).all():
                raise DataError(f"{self.name}: {label} contains NaN or infinite values")

    def __len__(self) -> int:
        return self.y.shape[0]

    @property
    def x_dim(self) -> int:
        return self.x.shape[1]

    @property
    def y_dim(self) -> int:
        return self.y.shape[1]

    def to(self, device: str | torch.device) -> "Dataset":
        return Dataset(self.name, self.x.to(device), self.y.to(device), dict(self.truth), dict(self.params))

    def to_csv(self, path: str | Path) -> Path:
        """Write ``x1..xp, y1..yq`` columns with a header; the format :func:`load_csv` reads."""
        path = Path(path)
        header = [f"x{i + 1}" for i in range(self.x_dim)] + [f"y{j + 1}" for j in range(self.y_dim)]
        table = torch.cat([self.x, self.y], dim=1).cpu().numpy()
        try:
            np.savetxt(path, table, delimiter=",", header=",".join(header), comments="", fmt="%.10g")
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror}") from exc
        return path


def _as_matrix(t: Any, label: str) -> torch.Tensor:
    if isinstance(t, np.ndarray) and not t.flags.writeable:  # pandas' copy-on-write arrays: torch cannot share them
        t = np.array(t)
    t = torch.as_tensor(t, dtype=torch.get_default_dtype())
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    if t.dim() != 2:
        raise DataError(f"{label} must be a matrix (n, columns), got shape {tuple(t.shape)}")
    return t
