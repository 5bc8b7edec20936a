"""Models as Pyro programs over plain ``nn.Module`` networks."""

from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.nets import MLP, GaussianEncoder
from pyrovae.models.noise import (
    CalibratedNoise, FixedNoise, LearnedNoise, LearnedVectorNoise, NetworkNoise, ObservationNoise, ScheduledNoise,
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
    "NetworkNoise",
    "ScheduledNoise",
    "fstar_noise",
    "make_noise",
]
