"""A data set drawn afresh for every training batch (the large-sample regime).

:class:`StreamDataset` is a :class:`~pyrovae.data.base.Dataset` whose ``x``/``y`` are a fixed
evaluation sample (what the trainer evaluates after each block and what final metrics use),
plus a ``sampler(n, generator)`` that draws new points. The trainer calls
:meth:`StreamDataset.resample` with each replicate's own generator instead of sub-sampling
``x``/``y`` at every step, so a seeded run is reproducible, a replicate's draws do not depend on
the batch it trains in, and a resumed run (which restores the generators) continues the same
stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError
from pyrovae.validation import integer_at_least

__all__ = ["StreamDataset"]

Sampler = Callable[[int, "torch.Generator | None"], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class StreamDataset(Dataset):
    """``x``, ``y``: a fixed evaluation sample; ``sampler(n, generator) -> (x, y)``: ``n`` fresh points
    drawn from ``generator`` (torch's global generator when it is None). ``any_device``: the sampler draws
    on its generator's device (a CUDA generator gives CUDA points), so the set can train on a GPU; a sampler
    that draws on the CPU only cannot."""

    sampler: Sampler | None = None
    any_device: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.sampler):
            raise DataError(f"{self.name}: a stream data set needs a sampler(n, generator) -> (x, y)")

    def resample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh points from ``generator``, on the device and in the dtype of the evaluation sample."""
        n = integer_at_least("a batch's n", n)
        condition, observed = self.sampler(n, generator)
        condition = torch.as_tensor(condition).reshape(n, self.condition_dim).to(self.observed)
        observed = torch.as_tensor(observed).to(self.observed)
        if observed.shape != (n, self.observed_dim):
            raise DataError(f"{self.name}: the sampler returned observed data of shape {tuple(observed.shape)}, expected {(n, self.observed_dim)}")
        return condition, observed

    def to(self, device: str | torch.device) -> "StreamDataset":
        return dataclasses.replace(self, condition=self.condition.to(device), observed=self.observed.to(device),
                                   truth=dict(self.truth), params=dict(self.params))
