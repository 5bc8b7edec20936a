"""Splits and standardisation fitted on the training part only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError

__all__ = ["Standardizer", "train_test_split"]


def train_test_split(data: Dataset, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A random split of the rows (``test_fraction`` of them, at least one, to the test part)."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"the test fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    n_test = min(n - 2, max(1, int(round(test_fraction * n))))
    if n_test < 1 or n - n_test < 2:
        raise ConfigError(f"{data.name}: {n} rows are too few to split")
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    test, train = perm[:n_test], perm[n_test:]
    params = dict(data.params, split_seed=int(seed), test_fraction=float(test_fraction))
    return (Dataset(data.name, data.condition[train], data.observed[train], {}, dict(params, part="train")),
            Dataset(data.name, data.condition[test], data.observed[test], {}, dict(params, part="test")))


@dataclass
class Standardizer:
    r"""Column means and standard deviations of a training set; ``transform`` maps any data set
    to :math:`(v - \text{mean}) / \text{sd}` and ``inverse_observed`` maps observed data back.

    A constant column keeps ``sd = 1``. A density of the standardised response converts to
    the original units by the Jacobian: :math:`\log p(y) = \log p(\tilde y) - \sum_j \log s_j`
    (:meth:`log_jacobian`).
    """

    condition_mean: torch.Tensor
    condition_sd: torch.Tensor
    observed_mean: torch.Tensor
    observed_sd: torch.Tensor

    @classmethod
    def fit(cls, train: Dataset) -> "Standardizer":
        def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if t.shape[1] == 0:
                return t.new_zeros(0), t.new_ones(0)
            sd = t.std(0)
            return t.mean(0), torch.where(sd > 0, sd, torch.ones_like(sd))

        return cls(*stats(train.condition), *stats(train.observed))

    def transform(self, data: Dataset) -> Dataset:
        return Dataset(data.name, (data.condition - self.condition_mean) / self.condition_sd, (data.observed - self.observed_mean) / self.observed_sd,
                       {}, dict(data.params, standardized=True))

    def transform_condition(self, condition: torch.Tensor) -> torch.Tensor:
        return (condition - self.condition_mean) / self.condition_sd

    def inverse_observed(self, observed: torch.Tensor) -> torch.Tensor:
        return observed * self.observed_sd + self.observed_mean

    @property
    def log_jacobian(self) -> float:
        r""":math:`\sum_j \log s_j`: subtract it from a log density of standardised ``y``."""
        return float(self.observed_sd.log().sum())
