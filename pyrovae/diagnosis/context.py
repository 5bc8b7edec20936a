"""A finished run, loaded once for every check: its config, model, data, history and metrics, and
the encoder's q(z | x, y) on a fixed subsample of the data.

Bad input is one line: a path that is not a run directory, a run of an unknown model kind, a
missing or damaged checkpoint (:class:`~pyrovae.errors.DataError` / :class:`~pyrovae.errors.ConfigError`,
which the CLI prints with exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pyrovae.errors import CheckpointError, DataError
from pyrovae.runs import has_checkpoint, read_json

__all__ = ["RunContext", "load_context"]


@dataclass
class RunContext:
    """What every check reads. ``condition``, ``observed`` are the subsample (``index`` into the data) on which the
    encoder's ``loc`` and ``scale`` were computed (``None`` for M2, whose checks use its own networks)."""

    run_dir: Path
    cfg: Any  # RunConfig
    model: Any  # SigmaCVAE or M2
    data: Any  # Dataset
    history: pd.DataFrame | None
    metrics: dict[str, Any]
    index: torch.Tensor
    condition: torch.Tensor
    observed: torch.Tensor
    loc: torch.Tensor | None
    scale: torch.Tensor | None
    seed: int

    @property
    def kind(self) -> str:
        return self.cfg.model

    @property
    def unconditional(self) -> bool:
        return self.condition.shape[1] == 0

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator for one check: checks never share a stream, so each is reproducible alone."""
        return torch.Generator().manual_seed(self.seed + offset)


def load_context(run_dir: str | Path, max_points: int = 2000, seed: int = 0) -> RunContext:
    """Load ``run_dir`` (:func:`pyrovae.api.load_run`) and the encoder outputs on up to ``max_points``
    points drawn without replacement with ``seed``."""
    from pyrovae.api import load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "a file" if run_dir.exists() else "no such directory"
        raise DataError(f"{run_dir} is not a run directory ({what})")
    if not (run_dir / "config.json").is_file():
        raise DataError(f"{run_dir} is not a run directory (no config.json; train one with `pyrovae train --out`)")
    if not has_checkpoint(run_dir):
        raise CheckpointError(f"{run_dir} has no checkpoint: the run has not finished (train it to the end first)")
    model, data, cfg = load_run(run_dir)
    model.eval()
    history = pd.read_csv(run_dir / "history.csv") if (run_dir / "history.csv").is_file() else None
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    n = len(data)
    g = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(n, generator=g)[:max_points]  # random order: any prefix is a random sample
    condition, observed = data.condition[index], data.observed[index]
    loc = scale = None
    if cfg.model != "m2":
        with torch.no_grad():
            loc, scale = model.encode(condition, observed)
    return RunContext(run_dir, cfg, model, data, history, metrics, index, condition, observed, loc, scale, int(seed))
