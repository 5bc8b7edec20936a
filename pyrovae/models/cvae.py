r"""The Gaussian σ-CVAE of Liu & Wang (2025) as a Pyro program.

Generative model (Liu & Wang 2025, Eq. 1 and 6):

.. math::
    z \sim N(0, I_d), \qquad y \mid x, z \sim N(\mu_\theta(x, z), \sigma^2 I_q),

with a mean-field Gaussian encoder :math:`q_\phi(z \mid x, y)`. The decoder scale
comes from an :class:`~pyrovae.models.noise.ObservationNoise`. A β weight on the
KL term is applied with ``poutine.scale`` on the latent site in *both* model and
guide, so ``Trace_ELBO`` and ``TraceMeanField_ELBO`` scale the same term.

With zero conditioning columns the same class is the unconditional VAE.

References:
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration*, Sec. 3-4, App. F.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.models.nets import MLP, GaussianEncoder, register_trainable
from pyrovae.models.noise import LearnedNoise, ObservationNoise
from pyrovae.validation import MAX_UNITS, finite_matrix, integer_at_least, widths

__all__ = ["SigmaCVAE", "kl_to_standard_normal", "own_program", "require_gaussian_program"]

_INSTANCES = itertools.count()  # each model's own name in Pyro's parameter store


def kl_to_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`KL[N(\mathrm{loc}, \mathrm{diag}(\mathrm{scale}^2)) \| N(0, I)]`, summed over the last
    (latent) dimension: the analytic KL of the mean-field encoder to the prior."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum(-1)


def _scaled(beta: float):
    if beta == 1.0:
        return contextlib.nullcontext()
    if beta == 0.0:  # poutine.scale refuses 0 (annealing starts at beta = 0): drop the term by masking
        return poutine.mask(mask=False)
    return poutine.scale(scale=beta)


class SigmaCVAE(nn.Module):
    """Conditional VAE with Gaussian decoder ``N(mu(x, z), sigma^2 I)``.

    Args:
        condition_dim: number of conditioning columns (Liu & Wang's x; 0 for an unconditional VAE).
        observed_dim: number of observed columns ``q`` (Liu & Wang's y).
        latent_dim: ``d``; 2 in Liu & Wang's two-moon experiment.
        encoder_widths, decoder_widths: hidden widths; defaults are Appendix F's
            ``[16, 8, 4, 2]`` and ``[2, 4, 16, 4]``.
        noise: the observation model (default: σ learned by gradient from 1).
        activation: hidden activation; ``tanh`` as Appendix F.
    """

    def __init__(
        self,
        condition_dim: int,
        observed_dim: int,
        latent_dim: int = 2,
        encoder_widths: Sequence[int] = (16, 8, 4, 2),
        decoder_widths: Sequence[int] = (2, 4, 16, 4),
        noise: ObservationNoise | None = None,
        activation: str = "tanh",
    ):
        super().__init__()
        self.condition_dim = integer_at_least("condition_dim", condition_dim, 0)
        self.observed_dim = integer_at_least("observed_dim", observed_dim)
        self.latent_dim = integer_at_least("latent_dim", latent_dim, 1, MAX_UNITS)
        encoder_widths, decoder_widths = widths("encoder_widths", encoder_widths), widths("decoder_widths", decoder_widths, empty=True)
        self.encoder = GaussianEncoder(self.condition_dim + self.observed_dim, encoder_widths, self.latent_dim, activation)
        self.decoder = MLP(self.condition_dim + self.latent_dim, decoder_widths, self.observed_dim, activation)
        self.noise = noise if noise is not None else LearnedNoise(1.0)
        self.check_noise()
        self.pyro_name = f"sigma_cvae_{next(_INSTANCES)}"

    def check_noise(self) -> None:
        """Refuse, with one line, an observation model that cannot read this decoder: a σ head
        (:class:`~pyrovae.models.noise.HeadNoise`) needs a decoder of layers ending in a linear mean
        layer with the head's input and output widths."""
        if not self.noise.reads_features:
            return
        last = self.decoder[-1] if isinstance(self.decoder, nn.Sequential) and len(self.decoder) else None
        if not isinstance(last, nn.Linear):
            raise ConfigError(f"{type(self.noise).__name__} reads the decoder's last hidden features: the decoder "
                              f"must be a sequence of layers ending in a linear mean layer, not {type(self.decoder).__name__}")
        if last.in_features != self.noise.features_dim:
            raise ConfigError(f"{type(self.noise).__name__} reads {self.noise.features_dim} hidden features; the "
                              f"decoder's mean layer reads {last.in_features}")
        if last.out_features != self.noise.out_dim:
            raise ConfigError(f"{type(self.noise).__name__} has {self.noise.out_dim} outputs; the decoder's mean "
                              f"layer has {last.out_features}")

    def __setstate__(self, state: dict) -> None:
        """A copy (``copy.deepcopy``) is another model: it gets its own parameter-store name."""
        super().__setstate__(state)
        self.pyro_name = f"sigma_cvae_{next(_INSTANCES)}"

    # -- networks -----------------------------------------------------------------
    def encode(self, condition: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of ``q(z | x, y)``."""
        self._check_widths(condition, observed)
        return self.encoder(torch.cat([condition, observed], dim=-1))

    def _check_widths(self, condition: torch.Tensor, observed: torch.Tensor | None = None) -> None:
        """A ``y`` (or ``x``) of another width could broadcast or even fit the encoder's input and give
        a finite, meaningless log-probability: refuse it by name."""
        for name, t, width in (("x", condition, self.condition_dim), ("y", observed, self.observed_dim)):
            if t is not None and (t.dim() < 1 or t.shape[-1] != width):
                raise DataError(f"{name} must have {width} columns for this model, got shape {tuple(t.shape)}")

    def decoder_input(self, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``[x, z]``, what the decoder (and a σ(x, z) observation model) reads; ``z`` may carry
        leading particle dimensions."""
        condition = condition.expand(z.shape[:-1] + condition.shape[-1:])
        return torch.cat([condition, z], dim=-1)

    def decode(self, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``mu(x, z)``; ``z`` may carry leading particle dimensions."""
        return self.decoder(self.decoder_input(condition, z))

    def _features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden features at decoder inputs ``inputs``: every layer but the mean layer."""
        for layer in list(self.decoder)[:-1]:
            inputs = layer(inputs)
        return inputs

    def _mean_and_noise_input(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder mean at ``inputs = [x, z]`` and what the observation model reads there: ``inputs``
        itself, or for a σ head (Berger & Sebag 2020, Eq. 11) the hidden features that also feed the
        mean layer, computed once."""
        if not self.noise.reads_features:
            return self.decoder(inputs), inputs
        features = self._features(inputs)
        return self.decoder[-1](features), features

    def noise_input(self, condition: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """What the observation model reads at ``(x, z)`` (its ``scale(mean, ·)``): the decoder input
        ``[x, z]``, or the decoder's last hidden features for a σ head."""
        inputs = self.decoder_input(condition, z)
        return self._features(inputs) if self.noise.reads_features else inputs

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder mean and σ for decoder inputs ``[x, z]``, without side effects (what the batched
        replicates of :mod:`pyrovae.inference.replicates` call under ``vmap``)."""
        mean, read = self._mean_and_noise_input(inputs)
        return mean, self.noise(mean, read)

    def mean_and_scale(self, condition: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder mean and σ at ``(x, z)``; a σ that varies with the point records its summary."""
        mean, read = self._mean_and_noise_input(self.decoder_input(condition, z))
        return mean, self.noise.scale(mean, read)

    @property
    def sigma(self) -> float:
        return self.noise.sigma

    # -- Pyro program -------------------------------------------------------------
    # model and guide register their networks with pyro.module, so that plain pyro.infer.SVI,
    # Predictive and MCMC find them in the parameter store. Each model has its own name there
    # (``pyro_name``): two models trained in one process never share parameters.
    def model(self, condition: torch.Tensor, observed: torch.Tensor | None = None, beta: float = 1.0) -> torch.Tensor:
        self._check_widths(condition, observed)
        register_trainable(f"{self.pyro_name}.decoder", self.decoder)
        register_trainable(f"{self.pyro_name}.noise", self.noise)
        zero = torch.zeros((), dtype=condition.dtype, device=condition.device)
        with pyro.plate("data", condition.shape[0], dim=-1):
            with _scaled(beta):
                z = pyro.sample("z", dist.Normal(zero, zero + 1).expand([self.latent_dim]).to_event(1))
            mean, scale = self.mean_and_scale(condition, z)
            return pyro.sample("y", dist.Normal(mean, scale).to_event(1), obs=observed)

    def guide(self, condition: torch.Tensor, observed: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        register_trainable(f"{self.pyro_name}.encoder", self.encoder)
        with pyro.plate("data", condition.shape[0], dim=-1):
            loc, scale = self.encode(condition, observed)
            with _scaled(beta):
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- inspection ---------------------------------------------------------------
    @torch.no_grad()
    def terms(self, condition: torch.Tensor, observed: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        r"""Per-point terms of the negative ELBO with one reparameterised ``z`` each.

        Returns ``recon`` :math:`= -\log N(y \mid \mu(x,z), \sigma^2 I)`, the analytic
        ``kl`` :math:`= KL[q(z|x,y) \| N(0,I)]` and ``sq_err`` :math:`= \|y - \mu(x,z)\|^2`.
        The mean of ``sq_err / q`` is the analytic σ² of Liu & Wang's Eq. 10. The draw comes from
        ``generator`` when given (a replicate's stream), else from torch's global generator.
        """
        loc, scale = self.encode(condition, observed)
        z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        mean, sigma = self.mean_and_scale(condition, z)
        recon = -dist.Normal(mean, sigma).log_prob(observed).sum(-1)
        kl = kl_to_standard_normal(loc, scale)
        return {"recon": recon, "kl": kl, "sq_err": (observed - mean).pow(2).sum(-1)}

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Draws of ``y ~ p(y | x)``: one per row of ``x``, or ``(num_samples, n, q)``. NaN inputs are
        refused: they would come back as NaN draws."""
        finite_matrix("x", condition, self.condition_dim)
        if num_samples is not None:
            num_samples = integer_at_least("num_samples", num_samples)
        z_shape = (condition.shape[0], self.latent_dim) if num_samples is None else (num_samples, condition.shape[0], self.latent_dim)
        z = torch.randn(z_shape, dtype=condition.dtype, device=condition.device)
        mean, sigma = self.mean_and_scale(condition, z)
        return mean + sigma * torch.randn_like(mean)

    @torch.no_grad()
    def reconstruct(self, condition: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``y' ~ p(y | x, z)`` with ``z ~ q(z | x, y)``: the "estimated training data" of Fig. 4."""
        loc, scale = self.encode(condition, observed)
        mean, sigma = self.mean_and_scale(condition, loc + scale * torch.randn_like(loc))
        return mean + sigma * torch.randn_like(mean)


def own_program(model: nn.Module) -> list[str]:
    """Which of ``model`` and ``guide`` a :class:`SigmaCVAE` subclass writes itself (its own
    likelihood or guide), in that order; ``[]`` for the Gaussian program of this module and for a
    model that is no :class:`SigmaCVAE`."""
    if not isinstance(model, SigmaCVAE):
        return []
    return [name for name in ("model", "guide") if getattr(type(model), name, None) is not getattr(SigmaCVAE, name)]


def require_gaussian_program(model: nn.Module, purpose: str) -> None:
    """Refuse, with one line, a model whose Pyro program is not :class:`SigmaCVAE`'s Gaussian one
    (a subclass with its own ``model`` or ``guide``, e.g. a Student-t likelihood): ``purpose``
    (the replicate engine, the analytic σ of Eq. 10, calibration) computes with Gaussian formulas
    and would silently give wrong numbers for it."""
    cls = type(model)
    own = own_program(model)
    if not isinstance(model, SigmaCVAE) or own:
        what = f"{cls.__name__}.{own[0]} is its own program" if own else f"{cls.__name__} is not a SigmaCVAE"
        raise ConfigError(f"{purpose} assumes the Gaussian σ-CVAE program; {what}: train it with "
                          "pyro.infer.SVI on its model and guide")
