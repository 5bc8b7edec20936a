"""Names for data sets, so the CLI and experiments can ask for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyrovae.data.base import Dataset
from pyrovae.data.conditional import two_moon
from pyrovae.errors import UnknownNameError

__all__ = ["DatasetEntry", "DATASETS", "make_dataset", "register_dataset"]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: Callable[..., Dataset]
    summary: str
    source: str


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, factory: Callable[..., Dataset], summary: str, source: str) -> None:
    DATASETS[name] = DatasetEntry(name, factory, summary, source)


def make_dataset(name: str, **kwargs) -> Dataset:
    """Build the data set registered under ``name`` with generator options ``kwargs``."""
    try:
        entry = DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    return entry.factory(**kwargs)


register_dataset(
    "two-moon",
    two_moon,
    "x in {-1, 1}; y on two noisy half circles (n, tau, seed); true sigma = tau",
    "seed 000, Sec. 5.1",
)
