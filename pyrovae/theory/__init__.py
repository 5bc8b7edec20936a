"""Closed forms and numerical checks behind two papers' theorems.

* :mod:`pyrovae.theory.hypersphere` — Berger & Sebag (2020), Theorem 1 / Eq. (8): the decoder
  radius a fixed-σ VAE prefers for data on a hypersphere, and the σ at which it collapses to 0.
* :mod:`pyrovae.theory.soft_threshold` — Dai, Wang & Wipf (2020), Eqs. (5)-(7) / Proposition 1:
  the soft-threshold decoder's closed-form VAE energy, its collapsed stationary point, gradients
  and Hessians.

Mathematics only: their figures are drawn in the papers' folders (:mod:`pyrovae.papers`).
"""

from pyrovae.theory import hypersphere, soft_threshold
from pyrovae.theory.hypersphere import (
    ThresholdResult, collapse_threshold, exact_threshold, log_likelihood, log_likelihood_gap,
    monte_carlo_log_likelihood, optimal_radius, optimal_radius_grid, theorem1_threshold,
)
from pyrovae.theory.soft_threshold import (
    VAEParams, collapsed_point, gradient, gradient_norm, hessian, hessian_eigenvalues, negative_elbo,
    perfect_reconstruction_point, soft_threshold_moments, two_point_data, vae_energy,
)

__all__ = [
    "hypersphere", "soft_threshold",
    # Berger & Sebag, Theorem 1
    "log_likelihood", "log_likelihood_gap", "optimal_radius", "collapse_threshold", "ThresholdResult",
    "exact_threshold", "theorem1_threshold", "monte_carlo_log_likelihood", "optimal_radius_grid",
    # Dai, Wang & Wipf, Proposition 1
    "VAEParams", "two_point_data", "vae_energy", "negative_elbo", "soft_threshold_moments", "collapsed_point",
    "perfect_reconstruction_point", "gradient", "gradient_norm", "hessian", "hessian_eigenvalues",
]
