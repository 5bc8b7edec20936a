r"""The Gaussian σ-CVAE of seed 000 as a Pyro program.

Generative model (seed 000, Eq. 1 and 6):

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
import functools
import math
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.distributions.utils import _standard_normal

from pyrovae.errors import DataError
from pyrovae.models.nets import MLP, GaussianEncoder
from pyrovae.models.noise import LearnedNoise, ObservationNoise
from pyrovae.validation import MAX_UNITS, finite_matrix, integer_at_least, widths

__all__ = ["SigmaCVAE"]


def _scaled(beta: float):
    if beta == 1.0:
        return contextlib.nullcontext()
    if beta == 0.0:  # poutine.scale refuses 0 (annealing starts at beta = 0): drop the term by masking
        return poutine.mask(mask=False)
    return poutine.scale(scale=beta)


# -- cheaper pieces of the Pyro program (see benchmarks/svi_overhead.py) -------------
# Each computes what the plain ``dist.Normal`` / ``pyro.plate`` version computes (the
# same log densities, hence the same ELBO and the same gradients up to float rounding)
# with fewer tensor operations and less Python per training step.

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant torch's Normal.log_prob subtracts


class _Independent(dist.Independent):
    """``Independent`` whose ``expand`` to the batch shape it already has returns itself.

    Pyro's plate broadcasting calls ``expand`` at every sample site, also when nothing
    changes, and an expanded copy costs more than building the distribution did.
    """

    def expand(self, batch_shape, _instance=None):
        if _instance is None and torch.Size(batch_shape) == self.batch_shape:
            return self
        return super().expand(batch_shape, _instance)


class _StandardNormal(dist.Normal):
    """``Normal(0, 1)`` whose ``log_prob`` folds in loc = 0 and scale = 1.

    Bit for bit torch's ``-((v - 0) ** 2) / (2 * 1) - log 1 - log sqrt(2 pi)``, in four
    operations instead of eight. Only built by :func:`_standard_normal_prior`.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -(value**2) / 2 - _LOG_SQRT_2PI


@functools.lru_cache(maxsize=16)
def _standard_normal_prior(n: int, d: int, dtype: torch.dtype, device: torch.device, validate: bool):
    """The prior ``N(0, I_d)`` over ``n`` points, built once per shape (it has no parameters)."""
    zero = torch.zeros((), dtype=dtype, device=device)
    one = torch.ones((), dtype=dtype, device=device)
    return _Independent(_StandardNormal(zero, one, validate_args=validate).expand([n, d]), 1)


class _ScalarScaleNormal(dist.Normal):
    """``Normal(loc, scale)`` with one scalar ``scale`` (the decoder's σ).

    ``.scale`` is broadcast as usual; ``log_prob`` squares and logs the scalar once
    instead of its ``n × q`` broadcast copy (the pattern of Pyro's own ``Uniform``).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool | None = None):
        super().__init__(loc, scale, validate_args=validate_args)
        self._scalar_scale = scale

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_ScalarScaleNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._scalar_scale = self._scalar_scale
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        s = self._scalar_scale
        return -((value - self.loc) ** 2) / (2 * s**2) - s.log() - _LOG_SQRT_2PI


class _ReparamNormal(dist.Normal):
    r"""The encoder's ``Normal(loc, scale)``; remembers the noise of its last ``rsample``.

    At its own draw :math:`z = \mathrm{loc} + \mathrm{scale}\cdot\epsilon`, ``log_prob(z)``
    is :math:`-\epsilon^2/2 - \log\mathrm{scale} - \log\sqrt{2\pi}`: the value of torch's
    formula (up to its rounding: it recomputes ``z - loc``), and the same gradient in loc
    and scale (the terms torch's formula adds through ``z`` cancel exactly), with fewer
    operations and a smaller backward graph. Any other value, a detached copy of the draw
    included, takes torch's formula.
    """

    _draw: tuple[torch.Tensor, torch.Tensor] | None = None

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)  # as torch's Normal
        value = self.loc + eps * self.scale
        self._draw = (value, eps)
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        draw = self._draw
        if draw is None or value is not draw[0]:
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        return -(draw[1] ** 2) / 2 - self.scale.log() - _LOG_SQRT_2PI


@functools.lru_cache(maxsize=16)
def _data_plate(n: int) -> pyro.plate:
    """``pyro.plate("data", n, dim=-1)``, one reusable object per size.

    Creating a full-size plate records a ``_Subsample`` sample site (a ``torch.arange``)
    that every ELBO prunes again; a reused plate skips it. A plate may be entered any
    number of times, one at a time (the model and the guide run one after the other).
    Built under ``poutine.block`` so that its own subsample site never lands in the trace
    that happens to be running when a size is first seen (the model and guide traces
    must agree on their plates).
    """
    with poutine.block():
        return pyro.plate("data", n, dim=-1)


class SigmaCVAE(nn.Module):
    """Conditional VAE with Gaussian decoder ``N(mu(x, z), sigma^2 I)``.

    Args:
        x_dim: number of conditioning columns (0 for an unconditional VAE).
        y_dim: number of response columns ``q``.
        latent_dim: ``d``; 2 in seed 000's two-moon experiment.
        encoder_widths, decoder_widths: hidden widths; defaults are Appendix F's
            ``[16, 8, 4, 2]`` and ``[2, 4, 16, 4]``.
        noise: the observation model (default: σ learned by gradient from 1).
        activation: hidden activation; ``tanh`` as Appendix F.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        latent_dim: int = 2,
        encoder_widths: Sequence[int] = (16, 8, 4, 2),
        decoder_widths: Sequence[int] = (2, 4, 16, 4),
        noise: ObservationNoise | None = None,
        activation: str = "tanh",
    ):
        super().__init__()
        self.x_dim = integer_at_least("x_dim", x_dim, 0)
        self.y_dim = integer_at_least("y_dim", y_dim)
        self.latent_dim = integer_at_least("latent_dim", latent_dim, 1, MAX_UNITS)
        encoder_widths, decoder_widths = widths("encoder_widths", encoder_widths), widths("decoder_widths", decoder_widths, empty=True)
        self.encoder = GaussianEncoder(self.x_dim + self.y_dim, encoder_widths, self.latent_dim, activation)
        self.decoder = MLP(self.x_dim + self.latent_dim, decoder_widths, self.y_dim, activation)
        self.noise = noise if noise is not None else LearnedNoise(1.0)

    # -- networks -----------------------------------------------------------------
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of ``q(z | x, y)``."""
        self._check_widths(x, y)
        return self.encoder(torch.cat([x, y], dim=-1))

    def _check_widths(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """A ``y`` (or ``x``) of another width could broadcast or even fit the encoder's input and give
        a finite, meaningless log-probability: refuse it by name."""
        for name, t, width in (("x", x, self.x_dim), ("y", y, self.y_dim)):
            if t is not None and (t.dim() < 1 or t.shape[-1] != width):
                raise DataError(f"{name} must have {width} columns for this model, got shape {tuple(t.shape)}")

    def decoder_input(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``[x, z]``, what the decoder (and a σ(x, z) observation model) reads; ``z`` may carry
        leading particle dimensions."""
        x = x.expand(z.shape[:-1] + x.shape[-1:])
        return torch.cat([x, z], dim=-1)

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``mu(x, z)``; ``z`` may carry leading particle dimensions."""
        return self.decoder(self.decoder_input(x, z))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder mean and σ for decoder inputs ``[x, z]``, without side effects (what the batched
        replicates of :mod:`pyrovae.inference.replicates` call under ``vmap``)."""
        mean = self.decoder(inputs)
        return mean, self.noise(mean, inputs)

    def _mean_and_scale(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.decoder_input(x, z)
        mean = self.decoder(inputs)
        return mean, self.noise.scale(mean, inputs)

    @property
    def sigma(self) -> float:
        return self.noise.sigma

    # -- Pyro program -------------------------------------------------------------
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, beta: float = 1.0) -> torch.Tensor:
        self._check_widths(x, y)
        n = x.shape[0]
        validate = torch.distributions.Distribution._validate_args  # the current default
        prior = _standard_normal_prior(n, self.latent_dim, x.dtype, x.device, validate)
        with _data_plate(n):
            with _scaled(beta):
                z = pyro.sample("z", prior)
            mean, scale = self._mean_and_scale(x, z)
            scalar = torch.is_tensor(scale) and scale.dim() == 0
            likelihood = _ScalarScaleNormal(mean, scale) if scalar else dist.Normal(mean, scale)
            return pyro.sample("y", _Independent(likelihood, 1), obs=y)

    def guide(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        with _data_plate(x.shape[0]):
            loc, scale = self.encode(x, y)
            with _scaled(beta):
                return pyro.sample("z", _Independent(_ReparamNormal(loc, scale), 1))

    # -- inspection ---------------------------------------------------------------
    @torch.no_grad()
    def terms(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        r"""Per-point terms of the negative ELBO with one reparameterised ``z`` each.

        Returns ``recon`` :math:`= -\log N(y \mid \mu(x,z), \sigma^2 I)`, the analytic
        ``kl`` :math:`= KL[q(z|x,y) \| N(0,I)]` and ``sq_err`` :math:`= \|y - \mu(x,z)\|^2`.
        The mean of ``sq_err / q`` is the analytic σ² of seed 000 Eq. 10. The draw comes from
        ``generator`` when given (a replicate's stream), else from torch's global generator.
        """
        loc, scale = self.encode(x, y)
        z = loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        mean, sigma = self._mean_and_scale(x, z)
        recon = -dist.Normal(mean, sigma).log_prob(y).sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum(-1)
        return {"recon": recon, "kl": kl, "sq_err": (y - mean).pow(2).sum(-1)}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Draws of ``y ~ p(y | x)``: one per row of ``x``, or ``(num_samples, n, q)``. NaN inputs are
        refused: they would come back as NaN draws."""
        finite_matrix("x", x, self.x_dim)
        if num_samples is not None:
            num_samples = integer_at_least("num_samples", num_samples)
        z_shape = (x.shape[0], self.latent_dim) if num_samples is None else (num_samples, x.shape[0], self.latent_dim)
        z = torch.randn(z_shape, dtype=x.dtype, device=x.device)
        mean, sigma = self._mean_and_scale(x, z)
        return mean + sigma * torch.randn_like(mean)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y' ~ p(y | x, z)`` with ``z ~ q(z | x, y)``: the "estimated training data" of Fig. 4."""
        loc, scale = self.encode(x, y)
        mean, sigma = self._mean_and_scale(x, loc + scale * torch.randn_like(loc))
        return mean + sigma * torch.randn_like(mean)
