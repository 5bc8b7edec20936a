"""Data generators and loaders; every one returns a :class:`Dataset` with its truth."""

from pyrovae.data.base import Dataset
from pyrovae.data.conditional import two_moon
from pyrovae.data.files import load_csv
from pyrovae.data.registry import DATASETS, make_dataset, register_dataset
from pyrovae.data.simulations import m1, m2, m3

__all__ = ["Dataset", "two_moon", "load_csv", "DATASETS", "make_dataset", "register_dataset", "m1", "m2", "m3"]
