"""Models as Pyro programs over plain ``nn.Module`` networks."""

from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.nets import MLP, GaussianEncoder
from pyrovae.models.noise import (
    CalibratedNoise, FixedNoise, HeadNoise, LearnedNoise, LearnedVectorNoise, NetworkNoise, ObservationNoise,
    ScheduledNoise,
    fstar_noise, make_noise,
)

__all__ = [
    "SigmaCVAE",
    "MLP",
    "GaussianEncoder",
    "ObservationNoise",
    "FixedNoise",
    "CalibratedNoise",
    "LearnedNoise",
    "LearnedVectorNoise",
    "HeadNoise",
    "NetworkNoise",
    "ScheduledNoise",
    "fstar_noise",
    "make_noise",
]
