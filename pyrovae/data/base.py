"""The dataset object every generator and loader returns."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.errors import DataError

__all__ = ["Dataset"]


@dataclass
class Dataset:
    r"""Observed data ``observed`` (n, q), conditioning inputs ``condition`` (n, p) and the known truth.

    ``observed`` is what the model's likelihood scores (Liu & Wang 2025 call it ``y``, Kingma
    et al.'s M2 and Yacoby, Pan & Doshi-Velez call it ``x``); ``condition`` is what a conditional
    model is given (Liu & Wang's ``x``) and has zero columns for unconditional data.
    ``truth`` carries what the generator knows and a learner should recover, for example
    ``{"sigma": 0.1}`` for two-moon (the noise standard deviation).

    ``x``, ``y``, ``x_dim`` and ``y_dim`` are the deprecated names of ``condition``,
    ``observed`` and their widths (Liu & Wang's notation); they warn and will go.
    """

    name: str
    condition: torch.Tensor
    observed: torch.Tensor
    truth: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.condition = _as_matrix(self.condition, "condition")
        self.observed = _as_matrix(self.observed, "observed")
        if self.condition.shape[0] != self.observed.shape[0]:
            raise DataError(f"condition has {self.condition.shape[0]} rows but the observed data has {self.observed.shape[0]}")
        if self.observed.shape[0] < 2 or self.observed.shape[1] < 1:
            raise DataError(f"need at least 2 rows and 1 observed column, got observed data of shape {tuple(self.observed.shape)}")
        for label, t in (("condition", self.condition), ("observed data", self.observed)):
            if not torch.isfinite(t).all():
                raise DataError(f"{self.name}: {label} contains NaN or infinite values")

    def __len__(self) -> int:
        return self.observed.shape[0]

    @property
    def condition_dim(self) -> int:
        return self.condition.shape[1]

    @property
    def observed_dim(self) -> int:
        return self.observed.shape[1]

    x = property(lambda self: _deprecated(self, "x", "condition"))
    y = property(lambda self: _deprecated(self, "y", "observed"))
    x_dim = property(lambda self: _deprecated(self, "x_dim", "condition_dim"))
    y_dim = property(lambda self: _deprecated(self, "y_dim", "observed_dim"))

    def to(self, device: str | torch.device) -> "Dataset":
        return Dataset(self.name, self.condition.to(device), self.observed.to(device), dict(self.truth), dict(self.params))

    def to_csv(self, path: str | Path) -> Path:
        """Write ``x1..xp`` (condition) and ``y1..yq`` (observed) columns with a header; the format
        :func:`~pyrovae.data.files.load_csv` reads."""
        path = Path(path)
        header = [f"x{i + 1}" for i in range(self.condition_dim)] + [f"y{j + 1}" for j in range(self.observed_dim)]
        table = torch.cat([self.condition, self.observed], dim=1).cpu().numpy()
        try:
            np.savetxt(path, table, delimiter=",", header=",".join(header), comments="", fmt="%.10g")
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror}") from exc
        return path


def _deprecated(data: Dataset, old: str, new: str) -> Any:
    warnings.warn(f"Dataset.{old} is deprecated; use Dataset.{new}", DeprecationWarning, stacklevel=3)
    return getattr(data, new)


def _as_matrix(t: Any, label: str) -> torch.Tensor:
    if isinstance(t, np.ndarray) and not t.flags.writeable:  # pandas' copy-on-write arrays: torch cannot share them
        t = np.array(t)
    t = torch.as_tensor(t, dtype=torch.get_default_dtype())
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    if t.dim() != 2:
        raise DataError(f"{label} must be a matrix (n, columns), got shape {tuple(t.shape)}")
    return t
