r"""The noise variance a decoder's residuals show under its exact posterior (Yacoby, Pan & Doshi-Velez
(2021), Eq. 9 with :math:`p_\theta(z \mid x)` in place of :math:`q_\phi`): the reference against which
:mod:`pyrovae.metrics.noise_fit` measures what the variational family adds to the ELBO-optimal σ².
"""

from __future__ import annotations

import torch

from pyrovae.errors import ConfigError
from pyrovae.metrics.noise_fit import check_model_data
from pyrovae.posterior.grid import grid_posterior
from pyrovae.posterior.target import model_target

__all__ = ["exact_posterior_noise_variance"]


@torch.no_grad()
def exact_posterior_noise_variance(model, condition: torch.Tensor, observed: torch.Tensor, per_dimension: bool = False,
                                   limit: float = 9.0, resolution: int = 2001, chunk: int = 250) -> torch.Tensor:
    r"""Eq. 9 with the exact posterior :math:`p_\theta(z \mid x)` in place of :math:`q_\phi` (1-D latent,
    midpoint grid of :func:`pyrovae.posterior.grid.grid_posterior`).

    At the generating model this is the noise variance itself in expectation:
    :math:`E_{p(x)} E_{p(z|x)}[(x - f(z))^2] = E_{p(z)} E_{p(x|z)}[(x - f(z))^2] = \sigma_\varepsilon^2`, so
    the gap between :func:`pyrovae.metrics.noise_fit.elbo_optimal_noise_variance` and this value is what the variational family
    (and the encoder's amortisation) adds — the over-estimate of Yacoby, Pan & Doshi-Velez (2021), Sec. 8, Case A."""
    check_model_data(model, condition, observed)
    if model.latent_dim != 1:
        raise ConfigError(f"the exact-posterior noise fit needs a 1-D latent, got latent_dim={model.latent_dim}")
    total = torch.zeros(observed.shape[1], dtype=torch.float64)
    for start in range(0, observed.shape[0], chunk):
        xs, ys = condition[start:start + chunk], observed[start:start + chunk]
        post = grid_posterior(model_target(model, xs, ys), limit=limit, resolution=resolution, on_flag="ignore")
        axis = post.axes[0].to(observed.dtype)
        z = axis[:, None, None].expand(len(axis), ys.shape[0], 1)
        sq = (ys[None] - model.decode(xs.expand(len(axis), *xs.shape), z)).pow(2)  # (G, n, q)
        weights = post.density().T.to(observed.dtype) * post.spacing[0]  # (G, n)
        total += (weights[..., None] * sq).sum((0, 1)).double()
    per_dim = (total / observed.shape[0]).to(observed.dtype)
    return per_dim if per_dimension else per_dim.mean()
