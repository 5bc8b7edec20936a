"""Exceptions raised on bad input: the CLI turns each into one line and exit code 2."""

__all__ = ["PyrovaeError", "ConfigError", "DataError", "UnknownNameError", "TrainingDiverged", "CheckpointError",
           "RunDirLocked"]


class PyrovaeError(Exception):
    """Base class of every error pyrovae raises on purpose."""


class ConfigError(PyrovaeError, ValueError):
    """An impossible hyper-parameter or option (K < 1, C < 0, sigma0 <= 0, ...)."""


class UnknownNameError(ConfigError, KeyError):
    """A data set, algorithm or estimator name that no registry knows."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class DataError(PyrovaeError, ValueError):
    """Data that cannot be used: NaN, wrong shape, missing or unreadable file."""


class TrainingDiverged(PyrovaeError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointError(DataError):
    """A checkpoint that is missing, torn or damaged, or a run directory that cannot be resumed."""


class RunDirLocked(PyrovaeError):
    """Another live process is writing the same run directory."""
