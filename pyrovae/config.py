"""One resolved configuration for a training run, from defaults, a file and overrides.

Files are JSON (``.json``) or TOML (``.toml``) with the field names of :class:`RunConfig`.
Every impossible value raises :class:`~pyrovae.errors.ConfigError` with one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrovae.combinations import check_combination, check_settings_apply, unused_settings
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.catalog import algorithm_name
from pyrovae.inference.robust_calibration import CALIBRATIONS
from pyrovae.inference.objectives import ELBOS
from pyrovae.inference.trainer import CONVERGENCE
from pyrovae.model_kinds import MODEL_KINDS
from pyrovae.models.noise import NOISES
from pyrovae.validation import MAX_POINTS, MAX_UNITS, integer_at_least, real, seed, text, widths
from pyrovae.validation import device as device_name

__all__ = ["RunConfig", "load_config", "MODELS"]

#: Model kinds ``pyrovae train --model`` builds, in :data:`~pyrovae.model_kinds.MODEL_KINDS`'s order.
MODELS = tuple(MODEL_KINDS)


@dataclass
class RunConfig:
    """Everything a run needs. Defaults: Liu & Wang's two-moon experiment (Sec. 5.1, App. F).

    ``model`` picks the kind (:data:`MODELS`): the σ-CVAE (default), the unconditional VAE (every
    column of the data is modelled), M2 (a semi-supervised data set or a file with a ``label``
    column; ``gamma``, ``alpha``, ``epochs`` are its own), or Yacoby, Pan & Doshi-Velez (2020)'s
    scalar linear / Cholesky models. ``noise`` is the σ-(C)VAE's observation model (``None``: the
    one its algorithm needs). ``algorithm`` and ``latent_dim`` left ``None`` take the kind's
    defaults (:class:`~pyrovae.model_kinds.ModelKind`). Combinations that make no sense
    are refused by :meth:`validate` with one line that says why.
    """

    # model kind
    model: str = "cvae"
    noise: str | None = None
    # data
    dataset: str = "two-moon"
    n: int = 5000
    tau: float = 0.1
    data_seed: int = 0
    data_file: str | None = None
    x_cols: list[str] | None = None  # the data file's conditioning columns, by name (σ-CVAE)
    y_cols: list[str] | None = None  # its response columns
    # model
    latent_dim: int | None = None
    encoder_widths: list[int] = field(default_factory=lambda: [16, 8, 4, 2])
    decoder_widths: list[int] = field(default_factory=lambda: [2, 4, 16, 4])
    activation: str = "tanh"
    sigma0: float = 1.0
    # algorithm
    algorithm: str | None = None
    K: int = 25
    C: float = 0.05
    calibration: str = "robust"  # ours (docs/RESULTS.md, "Calibration robustness"); "paper": Algorithm 1
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
    # M2 only (Yacoby, Pan & Doshi-Velez 2021, Eq. 5; App. D: 100 epochs)
    gamma: float = 1.0
    alpha: float = 0.0
    epochs: int = 100
    rounds: int = 1  # LiBI's rounds R (algorithm libi); max_steps is split over its two phases per round

    def validate(self) -> "RunConfig":
        """Check every field's type and range (:mod:`pyrovae.validation`) and normalise it in place
        (``3.0`` → ``3``); the first impossible value raises one line naming it."""
        from pyrovae.data.registry import DATASETS
        from pyrovae.models.nets import ACTIVATIONS

        self.data_file = None if self.data_file is None else text("data_file", self.data_file)
        self.dataset = text("dataset", self.dataset, None if self.data_file else sorted(DATASETS), "data set")
        self.n = integer_at_least("n (data points)", self.n, 1, MAX_POINTS)
        self.tau = real("tau (noise level)", self.tau, 0.0)
        options = DATASETS[self.dataset].options if self.data_file is None else {}
        if self.data_file is None and self.tau != RunConfig.tau and "tau" not in options:
            raise ConfigError(f"data set {self.dataset!r} has no noise level tau (its options: "
                              f"{', '.join(options)}); drop tau")
        for name in ("x_cols", "y_cols"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.data_file is None:
                raise ConfigError(f"{name} names columns of a data file; give data_file (--data-file) too")
            if isinstance(value, str):
                value = [c for c in value.split(",") if c.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in value):
                raise ConfigError(f"{name} must be a list of column names, got {value!r}")
            setattr(self, name, [c.strip() for c in value])
        self.data_seed = seed("data_seed", self.data_seed)
        self.model = text("model", self.model, list(MODELS), "model")
        self.latent_dim = MODEL_KINDS[self.model].latent_dim if self.latent_dim is None else \
            integer_at_least("latent_dim", self.latent_dim, 1, MAX_UNITS)
        self.encoder_widths = widths("encoder_widths", self.encoder_widths)
        self.decoder_widths = widths("decoder_widths", self.decoder_widths, empty=True)
        self.activation = text("activation", self.activation, list(ACTIVATIONS))
        self.sigma0 = real("sigma0", self.sigma0, 0.0, strict=True)
        self.algorithm = MODEL_KINDS[self.model].algorithm if self.algorithm is None else \
            algorithm_name(self.algorithm)
        if self.noise is not None:
            self.noise = text("noise", self.noise, list(NOISES), "observation model")
        self.K = integer_at_least("K (inner steps)", self.K)
        self.C = real("the calibration tolerance C", self.C, 0.0)
        self.calibration = text("calibration", self.calibration, list(CALIBRATIONS), "calibration variant")
        self.anneal_blocks = integer_at_least("anneal_blocks", self.anneal_blocks)
        self.cycles = integer_at_least("cycles", self.cycles)
        self.elbo = text("elbo", self.elbo, list(ELBOS), "ELBO estimator")
        self.particles = integer_at_least("particles", self.particles, 1, MAX_UNITS)
        self.lr = real("the learning rate", self.lr, 0.0, strict=True)
        self.max_steps = integer_at_least("max_steps", self.max_steps)
        self.tol = real("the convergence tolerance", self.tol, 0.0)
        self.convergence = text("convergence", self.convergence, list(CONVERGENCE), "convergence rule")
        if self.batch_size is not None:
            self.batch_size = integer_at_least("batch_size", self.batch_size)
        self.checkpoint_every = integer_at_least("checkpoint_every", self.checkpoint_every)
        self.seed = seed("seed", self.seed)
        self.device = device_name("device", self.device, available=False)  # a stored GPU run reads back anywhere
        self.threads = integer_at_least("threads", self.threads, 1, MAX_UNITS)
        self.gamma = real("gamma (M2's labelled weight)", self.gamma, 0.0)
        self.alpha = real("alpha (M2's classifier weight)", self.alpha, 0.0)
        self.epochs = integer_at_least("epochs", self.epochs, 1, MAX_POINTS)
        self.rounds = integer_at_least("rounds (LiBI's R)", self.rounds, 1, MAX_UNITS)
        check_combination(self)
        check_settings_apply(self)
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


def load_config(path: str | Path | None = None, stored: bool = False, **overrides: Any) -> RunConfig:
    """Defaults, then the file at ``path`` (JSON or TOML), then ``overrides``. ``stored``: ``path`` is a
    run directory's own ``config.json``; settings its model and algorithm did not read (which older
    versions accepted, :func:`~pyrovae.combinations.unused_settings`) are dropped, not refused: they
    had no effect on the run."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"config file not found: {path}")
        try:
            content = path.read_text()
            values = tomllib.loads(content) if path.suffix == ".toml" else json.loads(content)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{path}: cannot parse as {'TOML' if path.suffix == '.toml' else 'JSON'} "
                              f"({str(exc).splitlines()[0][:120]})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a table of settings")
        if stored:
            unused = unused_settings(values.get("model", "cvae"), values.get("algorithm"),
                                     values.get("calibration", RunConfig.calibration))
            values = {k: v for k, v in values.items() if k not in unused}
    # one validation of the merged settings: the kind's defaults (algorithm, latent_dim) are filled
    # in only after a flag or the file has named the kind
    return RunConfig().replace(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
