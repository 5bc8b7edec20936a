"""Inference: one trainer, algorithms as plug-ins, ELBO estimators, schedules, calibration."""

from pyrovae.inference.algorithms import AnalyticSigma, AnnealedSigma, CalibratedSigma, FixedSigma, JointSVI, ReplaySigma
from pyrovae.inference.catalog import ALGORITHMS, make_algorithm
from pyrovae.inference.calibration import CalibrationRule
from pyrovae.inference.objectives import ELBOS, make_elbo
from pyrovae.inference.robust_calibration import RobustCalibratedSigma, RobustSettings
from pyrovae.inference.schedules import BetaSchedule, cyclical, eq12_beta, frange_cycle_linear, monotonic
from pyrovae.inference.trainer import Trainer, TrainResult, TrainSettings

__all__ = [
    "ALGORITHMS", "AnalyticSigma", "AnnealedSigma", "CalibratedSigma", "FixedSigma", "JointSVI", "ReplaySigma", "make_algorithm",
    "CalibrationRule", "RobustCalibratedSigma", "RobustSettings", "ELBOS", "make_elbo", "BetaSchedule", "cyclical", "eq12_beta", "frange_cycle_linear",
    "monotonic", "Trainer", "TrainResult", "TrainSettings",
]
