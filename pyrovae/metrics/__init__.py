r"""Metrics shared by every experiment.

* :mod:`~pyrovae.metrics.likelihood` — importance-sampled test log-likelihood (Yacoby, Pan & Doshi-Velez 2020, Eq. 48);
* :mod:`~pyrovae.metrics.two_sample` — smooth kNN statistic (Djolonga & Krause 2017), MMD;
* :mod:`~pyrovae.metrics.normality` — Henze-Zirkler statistic (differentiable) and p-value;
* :mod:`~pyrovae.metrics.information` — KSG :math:`I(x; z_j)`, aggregate-posterior MI, KL per
  dimension, active units;
* :mod:`~pyrovae.metrics.conditional` — conditional mean/SD from draws and their MSE (Liu & Wang 2025).
"""

from pyrovae.metrics.conditional import ConditionalMoments, MomentErrors, conditional_moments, moment_errors
from pyrovae.metrics.information import (
    ActiveUnits,
    active_units,
    aggregate_posterior_mutual_information,
    kl_per_dimension,
    ksg_mutual_information,
    latent_mutual_information,
)
from pyrovae.metrics.likelihood import ImportanceDiagnostics, gaussian_proposal, importance_log_marginal, vae_log_likelihood
from pyrovae.metrics.normality import HZResult, henze_zirkler, henze_zirkler_pvalue, henze_zirkler_test, hz_beta
from pyrovae.metrics.two_sample import SmoothKNNResult, mmd2_unbiased, smooth_knn_repeated, smooth_knn_statistic

__all__ = [
    "ImportanceDiagnostics", "gaussian_proposal", "importance_log_marginal", "vae_log_likelihood",
    "SmoothKNNResult", "smooth_knn_statistic", "smooth_knn_repeated", "mmd2_unbiased",
    "HZResult", "hz_beta", "henze_zirkler", "henze_zirkler_pvalue", "henze_zirkler_test",
    "ksg_mutual_information", "latent_mutual_information", "aggregate_posterior_mutual_information",
    "kl_per_dimension", "ActiveUnits", "active_units",
    "ConditionalMoments", "MomentErrors", "conditional_moments", "moment_errors",
]
