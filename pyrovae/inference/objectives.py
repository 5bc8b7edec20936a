r"""ELBO estimators by name.

* ``trace`` — :class:`pyro.infer.Trace_ELBO`: Monte-Carlo ``log p - log q`` (:class:`ReparamTrace_ELBO`,
  the same loss assembled without Pyro's per-site ``.item()`` copies when the guide is reparameterised).
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
from pyro.distributions.util import is_identically_zero
from pyro.infer.util import get_dependent_plate_dims, is_validation_enabled, torch_item, torch_sum
from pyro.util import warn_if_nan

from pyrovae.errors import ConfigError, UnknownNameError

__all__ = ["ELBOS", "IWAE_ELBO", "ReparamTrace_ELBO", "make_elbo", "check_objective"]


class ReparamTrace_ELBO(pyro.infer.Trace_ELBO):
    r"""``Trace_ELBO`` whose ``differentiable_loss`` skips work that a reparameterised
    guide does not need; the loss tensor and its gradient are those of ``Trace_ELBO``.

    Pyro's version accumulates, next to the differentiable surrogate, a float copy of the
    ELBO (one ``.item()`` per sample site and one for the surrogate, each a device sync
    on GPU) and returns ``loss + (surrogate - surrogate.item())``. When no guide site has
    a score-function term the surrogate *is* the negative ELBO,
    :math:`-\sum_{\text{model}} \log p + \sum_{\text{guide}} \log q`, so it is returned
    as is. A particle with a non-reparameterised site falls back to Pyro's computation.
    The NaN hook on the loss is registered only while Pyro's validation is on.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle = self._reparam_surrogate(model_trace, guide_trace)
            if particle is None:  # score-function terms: Pyro's own particle
                value, surrogate = self._differentiable_loss_particle(model_trace, guide_trace)
                particle = value + (surrogate - torch_item(surrogate))
            loss = loss + particle / self.num_particles
        if is_validation_enabled():
            warn_if_nan(loss, "loss")
        return loss

    @staticmethod
    def _reparam_surrogate(model_trace, guide_trace):
        """Minus Pyro's surrogate ELBO of one particle, or None if it has score-function terms."""
        elbo = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                log_prob, score_function_term, entropy_term = site["score_parts"]
                if not is_identically_zero(score_function_term):
                    return None
                if entropy_term is log_prob:  # unscaled reparameterised site: reuse its sum
                    elbo = elbo - site["log_prob_sum"]
                elif not is_identically_zero(entropy_term):
                    elbo = elbo - entropy_term.sum()
        return -elbo


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
        return ReparamTrace_ELBO(**common)
    if name == "meanfield":
        return pyro.infer.TraceMeanField_ELBO(**common)
    if name == "iwae":
        return IWAE_ELBO(alpha=0.0, **common)
    raise UnknownNameError(f"unknown ELBO estimator {name!r}; known: {', '.join(ELBOS)}")


def check_objective(name: str, anneals: bool) -> None:
    """Refuse combinations that Pyro computes silently wrong."""
    if name == "iwae" and anneals:
        raise ConfigError("IWAE (RenyiELBO) cannot be combined with beta annealing: Pyro scales inside the log-sum-exp")
