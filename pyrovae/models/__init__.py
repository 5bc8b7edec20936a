"""Models as Pyro programs over plain ``nn.Module`` networks."""

from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.nets import MLP, GaussianEncoder
from pyrovae.models.noise import CalibratedNoise, FixedNoise, LearnedNoise, ObservationNoise, make_noise

__all__ = [
    "SigmaCVAE",
    "MLP",
    "GaussianEncoder",
    "ObservationNoise",
    "FixedNoise",
    "CalibratedNoise",
    "LearnedNoise",
    "make_noise",
]
