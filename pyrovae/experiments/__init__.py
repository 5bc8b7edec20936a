"""Experiments: one command per paper table (``pyrovae experiment list | run NAME``)."""

from pyrovae.experiments.registry import EXPERIMENTS, Experiment, ExperimentOptions, get_experiment, register
from pyrovae.experiments.results import ExperimentReport, ResultTable, Summary, summarize_values

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentOptions", "get_experiment", "register", "ExperimentReport",
           "ResultTable", "Summary", "summarize_values"]
