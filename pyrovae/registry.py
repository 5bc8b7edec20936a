"""One way to give things names: data sets, algorithms, observation models and experiments.

A :class:`Registry` is a dict from name to entry. Entries are added with :meth:`Registry.register`,
as a decorator or called on a value; a name it does not hold raises
:class:`~pyrovae.errors.UnknownNameError` with the names it does hold (or, for a name that was
renamed, the one line that says what it is called now).
"""

from __future__ import annotations

from typing import Callable, TypeVar

from pyrovae.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T]):
    """Names of one ``kind`` of thing (``"data set"``, ``"algorithm"`` …), in registration order.

    ``renamed`` maps names that meant something once to the line that says what to use now."""

    def __init__(self, kind: str, renamed: dict[str, str] | None = None):
        super().__init__()
        self.kind = kind
        self.renamed = dict(renamed or {})

    def __missing__(self, name: str) -> T:
        if name in self.renamed:
            raise UnknownNameError(self.renamed[name])
        raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}")

    def register(self, name: str, wrap: Callable[[object], T] | None = None):
        """Decorator adding the decorated object under ``name`` (``wrap(obj)`` when given, e.g. an
        entry holding the object with its summary and source); returns the object unchanged.
        ``registry.register(name)(obj)`` registers a value that is not defined by a statement."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

        def add(obj):
            self[name] = wrap(obj) if wrap is not None else obj
            return obj

        return add
