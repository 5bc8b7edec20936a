"""One resolved configuration for a training run, from defaults, a file and overrides.

Files are JSON (``.json``) or TOML (``.toml``) with the field names of :class:`RunConfig`.
Every impossible value raises :class:`~pyrovae.errors.ConfigError` with one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrovae.errors import ConfigError, DataError, UnknownNameError
from pyrovae.inference.algorithms import ALGORITHMS
from pyrovae.inference.robust_calibration import CALIBRATIONS
from pyrovae.inference.objectives import ELBOS
from pyrovae.inference.trainer import CONVERGENCE

__all__ = ["RunConfig", "load_config"]


@dataclass
class RunConfig:
    """Everything a run needs. Defaults: seed 000's two-moon experiment (Sec. 5.1, App. F)."""

    # data
    dataset: str = "two-moon"
    n: int = 5000
    tau: float = 0.1
    data_seed: int = 0
    data_file: str | None = None
    # model
    latent_dim: int = 2
    encoder_widths: list[int] = field(default_factory=lambda: [16, 8, 4, 2])
    decoder_widths: list[int] = field(default_factory=lambda: [2, 4, 16, 4])
    activation: str = "tanh"
    sigma0: float = 1.0
    # algorithm
    algorithm: str = "calibrated"
    K: int = 25
    C: float = 0.05
    calibration: str = "paper"
    anneal_blocks: int = 50
    cycles: int = 5
    # training loop
    elbo: str = "trace"
    particles: int = 1
    lr: float = 0.005
    max_steps: int = 100_000
    tol: float = 1e-3
    convergence: str = "block-mean"
    batch_size: int | None = None
    checkpoint_every: int = 100
    # run
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # torch CPU threads per run; small networks run fastest on one

    def validate(self) -> "RunConfig":
        from pyrovae.data.registry import DATASETS

        if self.data_file is None and self.dataset not in DATASETS:
            raise UnknownNameError(f"unknown data set {self.dataset!r}; known: {', '.join(sorted(DATASETS))}")
        if self.algorithm not in ALGORITHMS:
            raise UnknownNameError(f"unknown algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if self.elbo not in ELBOS:
            raise UnknownNameError(f"unknown ELBO estimator {self.elbo!r}; known: {', '.join(ELBOS)}")
        if self.calibration not in CALIBRATIONS:
            raise UnknownNameError(f"unknown calibration variant {self.calibration!r}; known: {', '.join(CALIBRATIONS)}")
        _positive_int(self.K, "K (inner steps)")
        _positive_int(self.n, "n (data points)")
        _positive_int(self.latent_dim, "latent_dim")
        _positive_int(self.particles, "particles")
        _positive_int(self.max_steps, "max_steps")
        _positive_int(self.anneal_blocks, "anneal_blocks")
        _positive_int(self.cycles, "cycles")
        _positive_int(self.threads, "threads")
        if self.batch_size is not None:
            _positive_int(self.batch_size, "batch_size")
        if not (math.isfinite(self.C) and self.C >= 0):
            raise ConfigError(f"the calibration tolerance C must be >= 0, got {self.C}")
        if not (math.isfinite(self.sigma0) and self.sigma0 > 0):
            raise ConfigError(f"sigma0 must be > 0, got {self.sigma0}")
        if not (math.isfinite(self.tau) and self.tau >= 0):
            raise ConfigError(f"tau (noise level) must be >= 0, got {self.tau}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"the learning rate must be > 0, got {self.lr}")
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise ConfigError(f"the convergence tolerance must be >= 0, got {self.tol}")
        if self.convergence not in CONVERGENCE:
            raise UnknownNameError(f"unknown convergence rule {self.convergence!r}; known: {', '.join(CONVERGENCE)}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.elbo == "iwae" and self.algorithm in ("monotonic", "cyclical"):
            raise ConfigError("IWAE (RenyiELBO) cannot be combined with beta annealing: Pyro scales inside the log-sum-exp")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> "RunConfig":
        """A copy with ``overrides`` applied (``None`` values are ignored) and validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        values = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **values).validate()


def _positive_int(value: Any, label: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ConfigError(f"{label} must be an integer >= 1, got {value}")


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the file at ``path`` (JSON or TOML), then ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"config file not found: {path}")
        try:
            text = path.read_text()
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot parse ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a table of settings")
    return RunConfig().replace(**values).replace(**overrides)
