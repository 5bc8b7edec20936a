r"""ELBO estimators by name.

* ``trace`` — :class:`pyro.infer.Trace_ELBO`: Monte-Carlo ``log p - log q``.
* ``meanfield`` — :class:`pyro.infer.TraceMeanField_ELBO`: analytic KL for the mean-field guide.
* ``iwae`` — :class:`pyro.infer.RenyiELBO` with ``alpha = 0`` and ``S`` vectorised particles,
  the importance-weighted bound of Burda et al. (2016). Pyro applies ``poutine.scale``
  before its log-sum-exp, so a β ≠ 1 would be silently wrong: :func:`check_objective`
  refuses the combination.
"""

from __future__ import annotations

import math

import pyro.infer
import torch
from pyro.infer.util import get_dependent_plate_dims, torch_sum

from pyrovae.errors import ConfigError, UnknownNameError

__all__ = ["ELBOS", "IWAE_ELBO", "make_elbo", "check_objective"]


class IWAE_ELBO(pyro.infer.RenyiELBO):
    r"""``RenyiELBO`` with a ``differentiable_loss``, so it trains like the other ELBOs
    with a plain torch optimiser (Pyro's own ``loss_and_grads`` only back-propagates
    into parameters of the global parameter store).

    Per data point, :math:`-\frac{1}{1-\alpha}\log \frac1S \sum_s w_s^{1-\alpha}` with
    :math:`\log w_s = \log p(x, z_s) - \log q(z_s \mid x)`; ``alpha = 0`` is the IWAE
    bound. Requires reparameterised guide sites (Pyro checks) and full plates.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        particles = []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            log_w = 0.0
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    log_w = log_w + torch_sum(site["log_prob"], sum_dims)
            for site in guide_trace.nodes.values():
                if site["type"] == "sample":
                    log_w = log_w - torch_sum(site["log_prob"], sum_dims)
            particles.append(log_w)
        log_w = particles[0] if self.vectorize_particles and self.num_particles > 1 else torch.stack(particles)
        bound = torch.logsumexp((1.0 - self.alpha) * log_w, dim=0) - math.log(self.num_particles)
        return -bound.sum() / (1.0 - self.alpha)

ELBOS = ("trace", "meanfield", "iwae")


def make_elbo(name: str, particles: int = 1) -> pyro.infer.ELBO:
    """The Pyro ELBO called ``name``, with ``particles`` samples (vectorised)."""
    if int(particles) != particles or particles < 1:
        raise ConfigError(f"the number of particles must be a positive integer, got {particles}")
    particles = int(particles)
    common = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    if name == "trace":
        return pyro.infer.Trace_ELBO(**common)
    if name == "meanfield":
        return pyro.infer.TraceMeanField_ELBO(**common)
    if name == "iwae":
        return IWAE_ELBO(alpha=0.0, **common)
    raise UnknownNameError(f"unknown ELBO estimator {name!r}; known: {', '.join(ELBOS)}")


def check_objective(name: str, anneals: bool) -> None:
    """Refuse combinations that Pyro computes silently wrong."""
    if name == "iwae" and anneals:
        raise ConfigError("IWAE (RenyiELBO) cannot be combined with beta annealing: Pyro scales inside the log-sum-exp")
