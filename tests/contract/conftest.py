"""The runs the contract checks read, each trained once per session through the public API
(:func:`pyrovae.api.train`, :func:`~pyrovae.api.train_batch`) and shared by the checks that need it."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from pyrovae.api import train, train_batch
from pyrovae.errors import ConfigError
from pyrovae.inference.trainer import TrainResult
from tests.contract.cases import SEED, Combination, half_steps, linear_points, tiny_config


class ContractRuns:
    """Per combination: the uninterrupted run of 2k steps, the run of k steps resumed to 2k (or the
    refusal to resume), and a batch of three replicates whose middle one has the single run's seed."""

    def __init__(self, root: Path):
        self.root = root
        self.linear_file = linear_points(root / "linear.csv")

    def config(self, c: Combination, steps: int | None = None, seed: int = SEED):
        return tiny_config(c, self.linear_file, 2 * half_steps(c) if steps is None else steps, seed)

    def dir(self, c: Combination, name: str) -> Path:
        return self.root / str(c) / name

    @functools.cache
    def whole(self, c: Combination) -> TrainResult:
        return train(self.config(c), out=self.dir(c, "whole"), plots=False)

    @functools.cache
    def resumed(self, c: Combination) -> TrainResult | ConfigError:
        """k steps into a directory, then the same directory asked for 2k: the resumed run, or the refusal."""
        out = self.dir(c, "halves")
        train(self.config(c, half_steps(c)), out=out, plots=False)
        try:
            return train(self.config(c), out=out, plots=False)
        except ConfigError as refusal:
            return refusal

    @functools.cache
    def batch(self, c: Combination) -> list[TrainResult] | ConfigError:
        """Seeds (SEED + 1, SEED, SEED + 2) as one batched run: its results, or the refusal to batch."""
        cfgs = [self.config(c, seed=s) for s in (SEED + 1, SEED, SEED + 2)]
        try:
            return train_batch(cfgs, [self.dir(c, f"rep-{i}") for i in range(3)],
                               plots=False)
        except ConfigError as refusal:
            return refusal


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> ContractRuns:
    return ContractRuns(tmp_path_factory.mktemp("contract"))
