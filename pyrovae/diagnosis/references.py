r"""The numbers the checks hold a run against, computed from the run's own data and model.

* :func:`analytic_sigma` — the σ that maximises the ELBO for the run's decoder mean and encoder:
  :math:`\hat\sigma^2 = \frac{1}{nq}\sum_n E_q\|y_n - \mu(x_n, z)\|^2` (Liu & Wang 2025, Eq. 10;
  Yacoby, Pan & Doshi-Velez 2021, Eq. 9).
* :func:`collapse_sigma` — the data-scale threshold :math:`R/\sqrt D` above which a decoder that
  ignores z is the optimum (Berger & Sebag 2020, Theorem 1 in this library's exact form,
  :func:`pyrovae.theory.hypersphere.exact_threshold`), with :math:`R^2` the mean squared distance of
  the data from what x alone predicts (the mean for an unconditional model; a cross-validated k-NN
  regression of y on x for the σ-CVAE). :math:`(R/\sqrt D)^2` is also Dai, Wang & Wipf (2020)'s
  :math:`\bar\gamma`, the decoder variance at their collapsed local minimum (Proposition 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["analytic_sigma", "collapse_sigma", "residual_radius"]


def analytic_sigma(model, condition: torch.Tensor, observed: torch.Tensor, draws: int = 20, seed: int = 0) -> float:
    """:math:`\\hat\\sigma` of Liu & Wang's Eq. 10 with ``draws`` z ~ q per point."""
    from pyrovae.metrics.noise_fit import elbo_optimal_noise_variance

    return math.sqrt(float(elbo_optimal_noise_variance(model, condition, observed, draws=draws, seed=seed)))


def residual_radius(condition: torch.Tensor, observed: torch.Tensor, neighbours: int = 10, seed: int = 0) -> float:
    r""":math:`R = \sqrt{\frac1n\sum_n\|y_n - \hat y(x_n)\|^2}`: ŷ the mean (no x) or a 5-fold
    cross-validated ``neighbours``-NN regression of y on x."""
    ya = observed.detach().double().cpu().numpy()
    if condition.shape[1] == 0:
        residual = ya - ya.mean(0)
    else:
        from sklearn.model_selection import KFold, cross_val_predict
        from sklearn.neighbors import KNeighborsRegressor

        xa = condition.detach().double().cpu().numpy()
        k = max(1, min(neighbours, len(ya) // 5 - 1))
        folds = KFold(5, shuffle=True, random_state=seed)
        residual = ya - cross_val_predict(KNeighborsRegressor(k), xa, ya, cv=folds)
    return float(np.sqrt((residual**2).sum(1).mean()))


def collapse_sigma(condition: torch.Tensor, observed: torch.Tensor, seed: int = 0) -> float:
    """Berger & Sebag's :math:`R/\\sqrt D` for the data ``(x, y)`` (module docstring)."""
    from pyrovae.theory.hypersphere import exact_threshold

    D = observed.shape[1]
    R = residual_radius(condition, observed, seed=seed)
    return float(exact_threshold(D, R)) if D >= 2 and R > 0 else R / math.sqrt(D)
