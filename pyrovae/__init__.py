"""pyrovae: understanding and fixing the ways variational autoencoders fail, as Pyro programs.

The names below are imported on first use (PEP 562), so ``import pyrovae`` and the command
line's ``--help`` do not pay for torch, SciPy or matplotlib until something needs them.
"""

import importlib

#: public name -> the module that defines it
_EXPORTS = {
    "Dataset": "pyrovae.data", "two_moon": "pyrovae.data", "SigmaCVAE": "pyrovae.models",
    "Trainer": "pyrovae.inference", "TrainSettings": "pyrovae.inference", "TrainResult": "pyrovae.inference",
    "RunConfig": "pyrovae.config", "load_config": "pyrovae.config",
    "train": "pyrovae.api", "train_reps": "pyrovae.api", "train_batch": "pyrovae.api", "load_run": "pyrovae.api",
    "diagnose": "pyrovae.diagnosis",
}
_SUBPACKAGES = ("data", "inference", "models")

__all__ = [*_SUBPACKAGES, *_EXPORTS]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"pyrovae.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pyrovae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
