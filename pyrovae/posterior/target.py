r"""The object every ground-truth method works on: per-point log-likelihoods of a fixed decoder.

For a decoder held fixed, the posterior over all latents factorises over data points,

.. math::
    p_\theta(z_{1:N} \mid y_{1:N}) = \prod_n p_\theta(z_n \mid y_n)
    \propto \prod_n p_\theta(y_n \mid z_n)\, N(z_n; 0, I),

so one object that evaluates :math:`\log p_\theta(y_n \mid z_n)` for a batch of latents
of shape ``(..., N, d)`` serves the grid, both HMC samplers and the comparison with
:math:`q_\phi(z \mid x, y)` (the posterior-matching objective, Yacoby, Pan & Doshi-Velez (2021) Eq. 3).

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of Variational Autoencoders and Their
    Effects on Downstream Tasks* (Yacoby, Pan & Doshi-Velez 2021), Eq. 3.
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration* (Liu & Wang 2025), Eq. 1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.models.cvae import own_program
from pyrovae.validation import device as device_name

__all__ = ["LatentTarget", "model_target", "select_points"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class LatentTarget:
    r"""Log-likelihood :math:`\log p(y_n \mid z_n)` of ``num_points`` data points, vectorised.

    Args:
        log_lik: maps ``z`` of shape ``(..., N, d)`` to ``(..., N)``. It must broadcast over
            any number of leading dimensions (grid points, chains, particles).
        latent_dim: ``d``.
        num_points: ``N``.
        decoder_mean: optional ``z -> (..., N, q)``, the decoder mean; with ``decoder_scale``
            it lets :func:`pyrovae.posterior.exact.linearize` test whether the decoder is linear.
        decoder_scale: optional ``z -> scale`` broadcastable to the decoder mean (standard
            deviations); it takes ``z`` because a learned :math:`\sigma(x, z)` depends on it.
        observed: optional observed data ``(N, q)`` the likelihood conditions on.
        points: indices of the points in the original data set (for labels and tables).
        model, condition: the frozen model and conditioning rows, when built by :func:`model_target`;
            they give the encoder's :math:`q_\phi(z \mid x, y)` for initialisation and comparison.

    The prior is :math:`N(0, I_d)` (Liu & Wang 2025 Eq. 1; Yacoby, Pan & Doshi-Velez (2021) Sec. 2).
    """

    log_lik: Callable[[torch.Tensor], torch.Tensor]
    latent_dim: int
    num_points: int
    decoder_mean: Callable[[torch.Tensor], torch.Tensor] | None = None
    decoder_scale: Callable[[torch.Tensor], torch.Tensor] | None = None
    observed: torch.Tensor | None = None
    points: Sequence[int] | None = None
    dtype: torch.dtype = field(default_factory=torch.get_default_dtype)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    model: Any = None
    condition: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.num_points < 1:
            raise ConfigError(f"need latent_dim >= 1 and num_points >= 1, got {self.latent_dim}, {self.num_points}")
        if self.points is None:
            self.points = list(range(self.num_points))
        self.points = [int(p) for p in self.points]
        if len(self.points) != self.num_points:
            raise ConfigError(f"{len(self.points)} point labels for {self.num_points} points")

    @staticmethod
    def log_prior(z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log N(z; 0, I_d)` summed over the last dimension."""
        return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * _LOG_2PI)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(y_n \mid z_n) + \log p(z_n)`, shape ``(..., N)``."""
        return self.log_lik(z) + self.log_prior(z)

    def encoder(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        r"""Location and scale ``(N, d)`` of :math:`q_\phi(z \mid x, y)`, or ``None`` without an encoder."""
        if self.model is None or not hasattr(self.model, "encode") or self.observed is None:
            return None
        condition = self.condition if self.condition is not None else self.observed.new_zeros(self.num_points, 0)
        with torch.no_grad():
            loc, scale = self.model.encode(condition, self.observed)
        return loc, scale

    def check_z(self, z: torch.Tensor) -> None:
        if z.dim() < 2 or z.shape[-2:] != (self.num_points, self.latent_dim):
            raise DataError(f"latents must have shape (..., {self.num_points}, {self.latent_dim}), got {tuple(z.shape)}")


def select_points(n: int, points: int | Sequence[int] | str | None) -> list[int]:
    """Indices of the chosen data points.

    ``None`` means all ``n``; an ``int`` ``k`` the first ``k``; a sequence of indices as given;
    a string ``"0,1,2"`` a list of indices and ``"20"`` a count (``"5,"`` is point 5 alone). Negative or out-of-range
    indices and repeats are a :class:`~pyrovae.errors.ConfigError`.
    """
    if points is None:
        return list(range(n))
    if isinstance(points, str):
        text = points.strip()
        try:
            if "," in text or text.startswith("["):
                points = [int(p) for p in text.strip("[]").split(",") if p.strip()]
            else:
                points = int(text)
        except ValueError:
            raise ConfigError(f"points must be a count such as '20' or indices such as '0,1,2'; got {text!r}") from None
    if isinstance(points, bool):
        raise ConfigError("points must be a count or a list of indices")
    if isinstance(points, int):
        if points < 1:
            raise ConfigError(f"need at least one point, got {points} (for point 0 alone write '0,')")
        return list(range(min(points, n)))
    chosen = [int(p) for p in points]
    if not chosen:
        raise ConfigError("no points chosen")
    bad = [p for p in chosen if p < 0 or p >= n]
    if bad:
        raise ConfigError(f"point indices {bad} out of range for {n} data points")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"repeated point indices in {chosen}")
    return chosen


def model_target(
    model,
    condition: torch.Tensor,
    observed: torch.Tensor,
    points: int | Sequence[int] | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LatentTarget:
    r"""The fixed decoder of a trained model as a :class:`LatentTarget`.

    ``model`` needs ``decode(x, z)`` (the decoder mean, broadcasting over leading
    dimensions of ``z``), ``noise.scale(mean, inputs)`` (the decoder standard deviation, given
    the mean and ``noise_input(x, z)`` when the model has one) and ``latent_dim`` — the
    interface of :class:`~pyrovae.models.cvae.SigmaCVAE`. The model is
    copied (parameters frozen, moved to ``device``/``dtype``); the caller's model is untouched.
    """
    for attr in ("decode", "noise", "latent_dim"):
        if not hasattr(model, attr):
            raise ConfigError(f"{type(model).__name__} has no {attr!r}; ground-truth posteriors need a Gaussian decoder model")
    condition, observed = torch.as_tensor(condition), torch.as_tensor(observed)
    if condition.dim() != 2 or observed.dim() != 2 or condition.shape[0] != observed.shape[0]:
        raise DataError(f"the condition and the observed data must be matrices with the same rows, got {tuple(condition.shape)} and {tuple(observed.shape)}")
    idx = select_points(observed.shape[0], points)
    device = torch.device(device_name("device", device))
    dtype = dtype or next((p.dtype for p in model.parameters()), torch.get_default_dtype())
    frozen = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    frozen.requires_grad_(False)
    xs = condition[idx].to(device=device, dtype=dtype)
    ys = observed[idx].to(device=device, dtype=dtype)
    if not torch.isfinite(ys).all() or not torch.isfinite(xs).all():
        raise DataError("x or y contains NaN or infinite values")

    if "model" in own_program(frozen):  # its own likelihood (a Student-t, say): read off its Pyro program
        return LatentTarget(log_lik=_program_log_lik(frozen, xs, ys), latent_dim=int(frozen.latent_dim),
                            num_points=len(idx), observed=ys, points=idx, dtype=dtype, device=device, model=frozen, condition=xs)

    decode = frozen.decode
    if xs.shape[-1] == 0 and isinstance(getattr(frozen, "decoder", None), torch.nn.Module):
        # unconditional model: skip the expand-and-concatenate of an empty x when the plain
        # decoder gives the same values (checked here), halving the cost of a gradient
        gen = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG alone
        probe = torch.randn(3, len(idx), frozen.latent_dim, generator=gen, dtype=dtype, device=device)
        with torch.no_grad():
            if torch.equal(frozen.decoder(probe), frozen.decode(xs, probe)):
                decode = lambda _x, z: frozen.decoder(z)  # noqa: E731

    def decoder_mean(z: torch.Tensor) -> torch.Tensor:
        return decode(xs, z)

    def scale_of(mean: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        inputs = frozen.noise_input(xs, z) if hasattr(frozen, "noise_input") else None
        return torch.as_tensor(frozen.noise.scale(mean, inputs), dtype=mean.dtype, device=mean.device)

    def decoder_scale(z: torch.Tensor) -> torch.Tensor:
        return scale_of(decoder_mean(z), z)

    q = ys.shape[-1]

    def log_lik(z: torch.Tensor) -> torch.Tensor:
        mean = decoder_mean(z)
        scale = scale_of(mean, z)
        if scale.numel() == 1:  # one σ for every output: fewer operations on (..., N, q) tensors
            sq = (ys - mean).pow(2).sum(-1)
            return -0.5 * sq / scale.pow(2) - q * (scale.log() + 0.5 * _LOG_2PI)
        scale = scale.expand_as(mean)
        r = (ys - mean) / scale
        return -(0.5 * r.pow(2) + scale.log() + 0.5 * _LOG_2PI).sum(-1)

    return LatentTarget(
        log_lik=log_lik,
        latent_dim=int(frozen.latent_dim),
        num_points=len(idx),
        decoder_mean=decoder_mean,
        decoder_scale=decoder_scale,
        observed=ys,
        points=idx,
        dtype=dtype,
        device=device,
        model=frozen,
        condition=xs,
    )


def _program_log_lik(model, condition: torch.Tensor, observed: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    r""":math:`\log p(y_n \mid x_n, z_n)` from the model's own Pyro program: its ``model`` run with the
    latent site ``z`` conditioned on the given values, the observed site ``y``'s log-density kept per
    point. For a model whose likelihood is not the Gaussian one, the ground truth follows what the
    model says, not a Gaussian formula; ``z`` of shape ``(..., N, d)`` must broadcast through it."""
    import pyro
    from pyro import poutine

    def log_lik(z: torch.Tensor) -> torch.Tensor:
        with pyro.validation_enabled(False):
            trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(condition, observed)
        site = trace.nodes["y"]
        return site["fn"].log_prob(site["value"])

    return log_lik
