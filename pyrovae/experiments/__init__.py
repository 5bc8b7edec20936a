"""The machinery of experiments: options, registry, parallel maps, task store, result tables.

The experiments themselves, one per paper table or figure, live in :mod:`pyrovae.papers`
(``pyrovae experiment list | run NAME``; in Python :func:`pyrovae.papers.get_experiment`).
The registry is light; the result tables (pandas) are imported on first use.
"""

import importlib

from pyrovae.experiments.registry import EXPERIMENTS, Experiment, ExperimentOptions, register

_RESULTS = ("ExperimentReport", "ResultTable", "Summary", "summarize_values")

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentOptions", "register", *_RESULTS]


def __getattr__(name: str):
    if name in _RESULTS:
        return getattr(importlib.import_module("pyrovae.experiments.results"), name)
    raise AttributeError(f"module 'pyrovae.experiments' has no attribute {name!r}")
