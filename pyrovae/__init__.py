"""pyrovae: understanding and fixing the ways variational autoencoders fail, as Pyro programs."""

from pyrovae import data, inference, models
from pyrovae.api import load_run, train, train_reps
from pyrovae.config import RunConfig, load_config
from pyrovae.data import Dataset, two_moon
from pyrovae.inference import Trainer, TrainResult, TrainSettings
from pyrovae.models import SigmaCVAE

__all__ = [
    "data", "inference", "models", "Dataset", "two_moon", "SigmaCVAE", "Trainer", "TrainSettings", "TrainResult",
    "RunConfig", "load_config", "train", "train_reps", "load_run",
]
__version__ = "0.1.0"
