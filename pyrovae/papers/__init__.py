"""Paper code, one folder per paper: each paper's experiments (one per table or figure, with a
small and a full protocol), its figures, and what only its experiments use.

============================================  ==============================================
folder                                        paper
============================================  ==============================================
:mod:`~pyrovae.papers.liu_wang_2025`          Liu & Wang (2025), the calibrated σ-CVAE
:mod:`~pyrovae.papers.yacoby_2021_failure_modes`  Yacoby, Pan & Doshi-Velez (2021), failure modes of VAEs and M2
:mod:`~pyrovae.papers.yacoby_2020_libi`       Yacoby, Pan & Doshi-Velez (2020), LiBI
:mod:`~pyrovae.papers.dai_wang_wipf_2020`     Dai, Wang & Wipf (2020), the VAE's local minima
:mod:`~pyrovae.papers.berger_sebag_2020`      Berger & Sebag (2020), the decoder variance
============================================  ==============================================

The library below (data, models, inference, metrics, posterior, theory) never imports from here.
"""

from __future__ import annotations

import importlib

from pyrovae.experiments.registry import EXPERIMENTS, Experiment
from pyrovae.registry import Registry

__all__ = ["MODULES", "experiments", "get_experiment"]


#: the modules that register experiments, per paper folder
MODULES = {
    "liu_wang_2025": ("two_moon", "figures", "conditional_density", "uci", "mnist", "appendix_e", "calibration_robustness"),
    "yacoby_2021_failure_modes": ("unsupervised", "m2_semicircles", "m2_sweep", "m2_real"),
    "yacoby_2020_libi": ("figure1", "table1"),
    "dai_wang_wipf_2020": ("local_minimum", "gamma_bound", "depth"),
    "berger_sebag_2020": ("table1", "sphere"),
}


def experiments() -> Registry[Experiment]:
    """Every paper's experiments by name (importing the paper modules registers them)."""
    for paper, modules in MODULES.items():
        for module in modules:
            importlib.import_module(f"pyrovae.papers.{paper}.{module}")
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    """The experiment registered under ``name`` (:class:`~pyrovae.errors.UnknownNameError` lists the known ones)."""
    return experiments()[name]
