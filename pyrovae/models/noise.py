r"""Observation models: how the decoder scale :math:`\sigma` is produced.

One model class, several noise choices. Each object maps the decoder mean to a
scale broadcastable against it and says whether an algorithm may set it.

* :class:`FixedNoise` — a constant, never changed (a fixed-σ CVAE, Appendix H of seed 000).
* :class:`CalibratedNoise` — a buffer set from outside: the analytic update
  :math:`\sigma^2 = \mathbb{E}_D\mathbb{E}_q\|y-\mu\|^2/q` (seed 000 Eq. 10, Rybkin et al. 2021)
  and the calibration :math:`\sigma \leftarrow |1+\varphi|\sigma` (Eq. 15).
* :class:`LearnedNoise` — a positive scalar learned by gradient with θ and φ.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pyrovae.errors import ConfigError, UnknownNameError

__all__ = ["ObservationNoise", "FixedNoise", "CalibratedNoise", "LearnedNoise", "make_noise"]


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"sigma must be a positive number, got {sigma}")
    return sigma


class ObservationNoise(nn.Module):
    """Base class. ``settable`` says whether an algorithm may overwrite σ."""

    settable = False
    learned = False

    def scale(self, mean: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def sigma(self) -> float:
        """A scalar summary of the scale, for histories and tables."""
        raise NotImplementedError


class FixedNoise(ObservationNoise):
    def __init__(self, sigma: float):
        super().__init__()
        self.register_buffer("value", torch.tensor(_check_sigma(sigma)))

    def scale(self, mean: torch.Tensor) -> torch.Tensor:
        return self.value

    @property
    def sigma(self) -> float:
        return float(self.value)


class CalibratedNoise(FixedNoise):
    """A scalar σ held as a buffer and set from outside by an algorithm."""

    settable = True

    def set_sigma(self, sigma: float | torch.Tensor) -> None:
        value = torch.as_tensor(sigma, dtype=self.value.dtype, device=self.value.device)
        if not torch.isfinite(value) or value <= 0:
            raise FloatingPointError(f"refusing to set sigma to {float(value)}")
        self.value.copy_(value)


class LearnedNoise(ObservationNoise):
    """A positive scalar σ = exp(log σ), learned jointly by gradient."""

    learned = True

    def __init__(self, sigma: float):
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(_check_sigma(sigma))))

    def scale(self, mean: torch.Tensor) -> torch.Tensor:
        return self.log_sigma.exp()

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.detach().exp())


NOISES = {"fixed": FixedNoise, "calibrated": CalibratedNoise, "learned": LearnedNoise}


def make_noise(kind: str, sigma0: float) -> ObservationNoise:
    try:
        cls = NOISES[kind]
    except KeyError:
        raise UnknownNameError(f"unknown observation model {kind!r}; known: {', '.join(NOISES)}") from None
    return cls(sigma0)
