"""Experiments: one command per paper table (``pyrovae experiment list | run NAME``).

The registry is light; the result tables (pandas) are imported on first use.
"""

import importlib

from pyrovae.experiments.registry import EXPERIMENTS, Experiment, ExperimentOptions, get_experiment, register

_RESULTS = ("ExperimentReport", "ResultTable", "Summary", "summarize_values")

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentOptions", "get_experiment", "register", *_RESULTS]


def __getattr__(name: str):
    if name in _RESULTS:
        return getattr(importlib.import_module("pyrovae.experiments.results"), name)
    raise AttributeError(f"module 'pyrovae.experiments' has no attribute {name!r}")
