"""The typed checks every input goes through: CLI flags, config files and API constructors.

Each check takes the name a user would recognise and the raw value (from a flag, a JSON or TOML
file, or a Python call), returns the value in its canonical type, or raises
:class:`~pyrovae.errors.ConfigError` (:class:`~pyrovae.errors.DataError` for tensors) with one
line. Booleans are never numbers here (``{"tau": true}`` is a mistake, not 1.0), strings are
never numbers (``{"lr": "abc"}``, ``{"C": "0.1"}``), and non-finite numbers are refused."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Sequence

from pyrovae.errors import ConfigError, DataError, UnknownNameError

if TYPE_CHECKING:
    import torch

__all__ = ["integer_at_least", "real", "text", "widths", "seed", "out_path", "device", "finite_matrix", "SEED_LIMIT",
           "MAX_POINTS", "MAX_UNITS"]

#: The most points a generator is asked for: ``--n 10000000000`` would exhaust memory, not train.
MAX_POINTS = 10_000_000

#: The most units of any other size (latent dimensions, layer widths, particles, threads,
#: repetitions): a value beyond it exhausts memory or the machine instead of running.
MAX_UNITS = 100_000

#: Seeds feed ``numpy.random.seed`` (through ``pyro.set_rng_seed``), which takes 0 ≤ seed < 2³².
SEED_LIMIT = 2**32


def integer_at_least(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int``, or a :class:`~pyrovae.errors.ConfigError` naming ``name`` when it is
    not an integer ``>= minimum`` (and ``<= maximum`` when given). Booleans are refused; so are
    strings and values ``int()`` cannot read (``1e400``)."""
    try:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) == value
        ok = ok and int(value) >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise ConfigError(f"{name} must be an integer <= {maximum:,}, got {value!r}")
    return int(value)


def real(name: str, value: Any, minimum: float = -math.inf, strict: bool = False) -> float:
    """``value`` as a finite ``float`` ``>= minimum`` (``> minimum`` when ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = "" if minimum == -math.inf else f" {'>' if strict else '>='} {minimum:g}"
        raise ConfigError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def text(name: str, value: Any, choices: Sequence[str] | None = None, what: str | None = None) -> str:
    """``value`` as a non-empty string; one of ``choices`` when given (else
    :class:`~pyrovae.errors.UnknownNameError`, naming it ``what``)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise UnknownNameError(f"unknown {what or name} {value!r}; known: {', '.join(choices)}")
    return value


def widths(name: str, value: Any, empty: bool = False) -> list[int]:
    """Hidden-layer widths: a list of integers >= 1 (a zero-width layer is refused), non-empty
    unless ``empty`` (a decoder with no hidden layer is linear; an encoder needs one)."""
    if not isinstance(value, (list, tuple)) or not (value or empty):
        kind = "a list" if empty else "a non-empty list"
        raise ConfigError(f"{name} must be {kind} of integers >= 1, got {value!r}")
    return [integer_at_least(f"each of {name}", w, 1, MAX_UNITS) for w in value]


def seed(name: str, value: Any) -> int:
    """A seed: an integer in ``[0, 2**32)``."""
    return integer_at_least(name, value, 0, SEED_LIMIT - 1)


def out_path(name: str, value: Any) -> str:
    """An output directory named explicitly: ``''`` would silently mean the current directory."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must name a directory, got {value!r}")
    return value


def device(name: str, value: Any, available: bool = True) -> str:
    """A torch device name: ``cpu``, ``cuda`` or ``cuda:N`` (``None`` and a :class:`torch.device`
    are read too), as a string. With ``available``, CUDA that this machine lacks is refused; a
    stored run configuration is read with ``available=False`` (it may come from a GPU machine)."""
    value = "cpu" if value is None else str(value)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise ConfigError(f"{name} must be cpu, cuda or cuda:N, got {value!r}")
    if available and value != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{name} {value}: CUDA is not available on this machine")
    return value


def finite_matrix(name: str, value: Any, columns: int) -> torch.Tensor:
    """A 2-D tensor of ``columns`` finite columns (what a model's inputs must be). torch is imported
    here, not above, so that the command line's own checks import no numerical library."""
    import torch

    if not torch.is_tensor(value) or value.dim() != 2 or value.shape[1] != columns:
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise DataError(f"{name} must be a 2-D tensor with {columns} columns, got {shape}")
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"{name} contains NaN or infinite values")
    return value
