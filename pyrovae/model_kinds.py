"""The model kinds ``pyrovae train --model`` can name, in one :class:`~pyrovae.registry.Registry`.

Each :class:`ModelKind` says once what the rest of the package used to spell out in tuples and
``if`` chains: its title, its defaults (latent width, algorithm), how it reads data (conditional or
every column modelled; labels for M2), whether its decoder is linear with closed forms, and how it
is built from a run's configuration for a data set.

* ``cvae``: the σ-CVAE of Liu & Wang (2025), Eq. 1 and App. F.
* ``vae``: the same program without a condition: every column is data (Berger & Sebag's LS-VAE is
  ``--noise learned --algorithm joint``, their LV-VAE ``--noise head``).
* ``m2``: Kingma et al.'s semi-supervised M2 as in Yacoby, Pan & Doshi-Velez (2021), Eq. 4-5.
* ``linear`` / ``cholesky``: Yacoby, Pan & Doshi-Velez (2020), App. C.1 / C.2, in a σ-CVAE shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import Algorithm
from pyrovae.inference.catalog import make_algorithm
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import make_noise
from pyrovae.registry import Registry
from pyrovae.validation import device as device_name

__all__ = ["ModelKind", "MODEL_KINDS"]


@dataclass(frozen=True)
class ModelKind:
    """One model kind. ``build(cfg, data, algorithm)`` returns the model on ``cfg.device``."""

    name: str
    title: str
    latent_dim: int | None  # the default latent width (None: the data's width)
    algorithm: str  # the default algorithm
    conditional: bool  # reads a condition; the others model every column of the data
    labelled: bool  # needs a semi-supervised data set (labels, some missing)
    linear: bool  # a linear decoder: exact posteriors, noise tied to the decoder
    build: Callable[[Any, Dataset, Algorithm | None], torch.nn.Module]


MODEL_KINDS: Registry[ModelKind] = Registry("model")


def _sigma_cvae(cfg, data: Dataset, algorithm: Algorithm | None) -> SigmaCVAE:
    """A σ-(C)VAE with the observation model its algorithm needs (or ``cfg.noise``); LiBI keeps σ fixed."""
    if cfg.algorithm == "libi":
        noise = cfg.noise or "fixed"
    else:
        algorithm = algorithm or make_algorithm(cfg.algorithm, cfg.C, cfg.calibration, cfg.anneal_blocks, cfg.cycles)
        noise = cfg.noise or ("learned" if algorithm.noise == "any" else algorithm.noise)
    in_dim = data.condition_dim + cfg.latent_dim
    model = SigmaCVAE(
        data.condition_dim, data.observed_dim, cfg.latent_dim, cfg.encoder_widths, cfg.decoder_widths,
        noise=make_noise(noise, cfg.sigma0, observed_dim=data.observed_dim, in_dim=in_dim,
                         features_dim=cfg.decoder_widths[-1] if cfg.decoder_widths else in_dim),
        activation=cfg.activation,
    )
    return model.to(device_name("device", cfg.device))


def _scalar_linear(cfg, data: Dataset, algorithm: Algorithm | None) -> SigmaCVAE:
    """x = θz + ε (App. C.1), θ = σ₀ / 2 and σ_ε = σ₀ to start, tied noise."""
    from pyrovae.models.linear import ScalarDecoder, linear_vae

    if data.observed_dim != 1:
        raise ConfigError(f"the scalar linear model x = θz + ε has one output; the data have {data.observed_dim} "
                          "columns (use --model cholesky)")
    return linear_vae(ScalarDecoder(0.5 * cfg.sigma0, cfg.sigma0)).float().to(device_name("device", cfg.device))


def _cholesky(cfg, data: Dataset, algorithm: Algorithm | None) -> SigmaCVAE:
    """x = Cholesky(AAᵀ + B) z + ε (App. C.2), A = I and B = σ₀²/2 to start, as many latents as columns."""
    from pyrovae.models.linear import CholeskyDecoder, linear_vae

    q = data.observed_dim
    if cfg.latent_dim not in (None, q):
        raise ConfigError(f"the Cholesky model x = Cholesky(AAᵀ + B) z + ε has as many latent dimensions as "
                          f"data columns ({q}); got latent_dim = {cfg.latent_dim}")
    eye = torch.eye(q, dtype=torch.float64)
    decoder = CholeskyDecoder(eye, torch.full((q,), 0.5 * cfg.sigma0**2, dtype=torch.float64), cfg.sigma0)
    return linear_vae(decoder).float().to(device_name("device", cfg.device))


def _m2(cfg, data: Dataset, algorithm: Algorithm | None):
    """M2 with σ_ε fixed at σ₀, every network ``encoder_widths`` wide, discrete or continuous labels."""
    from pyrovae.models.m2 import M2

    labelled = getattr(data, "labelled", None)
    if labelled is None:
        raise ConfigError("model m2 needs a semi-supervised data set (labels, some missing)")
    continuous = data.truth.get("kind") == "continuous"
    classes = 2 if continuous else int(data.labels[labelled].max()) + 1
    return M2(data.observed_dim, "continuous" if continuous else "discrete", num_classes=max(classes, 2),
              label_dim=data.labels.shape[1], latent_dim=cfg.latent_dim, widths=cfg.encoder_widths, sigma=cfg.sigma0,
              activation=cfg.activation)


for _kind in (
    # The σ-(C)VAE's default is Liu & Wang's calibrated σ; the others keep their noise as it is
    # (M2's fixed σ_ε, the linear models' tied noise) and train jointly.
    ModelKind("cvae", "σ-CVAE", 2, "calibrated", True, False, False, _sigma_cvae),
    ModelKind("vae", "VAE", 2, "calibrated", False, False, False, _sigma_cvae),
    ModelKind("m2", "M2", 1, "fixed", False, True, False, _m2),
    ModelKind("linear", "scalar linear VAE", 1, "fixed", False, False, True, _scalar_linear),
    ModelKind("cholesky", "Cholesky linear VAE", None, "fixed", False, False, True, _cholesky),
):
    MODEL_KINDS.register(_kind.name)(_kind)
