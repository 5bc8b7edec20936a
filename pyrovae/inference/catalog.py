"""The training algorithms by name (the table in :mod:`pyrovae.inference.algorithms`): what
``pyrovae train --algorithm`` and the experiments may ask for.

This module sits above every algorithm module, so the algorithms that build on
:mod:`~pyrovae.inference.algorithms` (robust calibration, Lagging Inference Networks) are named
here without an import circle.
"""

from __future__ import annotations

from typing import Callable

from pyrovae.errors import UnknownNameError
from pyrovae.inference.algorithms import Algorithm, AnalyticSigma, AnnealedSigma, CalibratedSigma, FixedSigma, JointSVI
from pyrovae.inference.lagging import LaggingInference
from pyrovae.inference.lagging_segments import SegmentedLagging
from pyrovae.inference.robust_calibration import RobustCalibratedSigma
from pyrovae.inference.schedules import cyclical, monotonic
from pyrovae.registry import Registry
from pyrovae.validation import text

__all__ = ["ALGORITHMS", "RUN_ALGORITHMS", "algorithm_name", "make_algorithm"]

#: name → ``factory(tolerance, variant, anneal_blocks, cycles)``; ``vanilla`` meant something else once.
ALGORITHMS: Registry[Callable[..., Algorithm]] = Registry("algorithm", renamed={
    "vanilla": "algorithm 'vanilla' was renamed 'joint' (θ, φ and σ learned jointly by SVI); "
    "Liu & Wang's (2025) 'Vanilla' (analytic σ, no calibration) is 'analytic'",
})


@ALGORITHMS.register("joint")
def _joint(tolerance, variant, anneal_blocks, cycles):
    return JointSVI()


@ALGORITHMS.register("analytic")
def _analytic(tolerance, variant, anneal_blocks, cycles):
    return AnalyticSigma()


@ALGORITHMS.register("calibrated")
def _calibrated(tolerance, variant, anneal_blocks, cycles):
    """Liu & Wang (2025) Algorithm 1 (``variant`` ``paper`` or ``code``, tolerance ``C``) or our
    robust variant (``robust``, :mod:`.robust_calibration`; it has no ``C``)."""
    return RobustCalibratedSigma() if variant == "robust" else CalibratedSigma(tolerance, variant)


@ALGORITHMS.register("monotonic")
def _monotonic(tolerance, variant, anneal_blocks, cycles):
    return AnnealedSigma(monotonic(anneal_blocks), "monotonic")


@ALGORITHMS.register("cyclical")
def _cyclical(tolerance, variant, anneal_blocks, cycles):
    return AnnealedSigma(cyclical(anneal_blocks, cycles), "cyclical")


@ALGORITHMS.register("fixed")
def _fixed(tolerance, variant, anneal_blocks, cycles):
    return FixedSigma()


@ALGORITHMS.register("lagging")
def _lagging(tolerance, variant, anneal_blocks, cycles):
    return LaggingInference()


@ALGORITHMS.register("lagging-segments")
def _lagging_segments(tolerance, variant, anneal_blocks, cycles):
    return SegmentedLagging()


#: What a run may name: the Trainer's plug-ins and LiBI (Yacoby, Pan & Doshi-Velez 2020), whose two
#: phases per round train through :mod:`pyrovae.inference.libi` rather than as one plug-in.
RUN_ALGORITHMS = (*ALGORITHMS, "libi")


def algorithm_name(value: object) -> str:
    """``value`` checked against :data:`RUN_ALGORITHMS`; a renamed name gets the line that says what it is now."""
    if isinstance(value, str) and value in ALGORITHMS.renamed:
        raise UnknownNameError(ALGORITHMS.renamed[value])
    return text("algorithm", value, list(RUN_ALGORITHMS))


def make_algorithm(name: str, tolerance: float = 0.05, variant: str = "paper", anneal_blocks: int = 50,
                   cycles: int = 5) -> Algorithm:
    """The algorithm called ``name`` with its options: ``tolerance`` (C) and ``variant`` of
    ``calibrated``, ``anneal_blocks`` and ``cycles`` of the annealing schedules."""
    return ALGORITHMS[name](tolerance, variant, anneal_blocks, cycles)
