"""Argument checks shared by the whole package: one wording, one exception."""

from __future__ import annotations

from pyrovae.errors import ConfigError

__all__ = ["integer_at_least"]


def integer_at_least(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int``, or a :class:`~pyrovae.errors.ConfigError` naming ``name`` when it is
    not an integer ``>= minimum``. Booleans are refused; so are values ``int()`` cannot read."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
