r"""Initialisation at the ground truth (Yacoby, Pan & Doshi-Velez 2021, Sec. 4 and App. D).

The decoder is fitted by supervised regression on the true pairs :math:`(z, f(z))` until its mean
squared error is below ``1e-4`` (:func:`fit_decoder`); the encoder is then fitted by maximising the
ELBO with that decoder (and the observation noise) held fixed (:func:`fit_encoder`).
:func:`init_at_ground_truth` does both for an unconditional :class:`~pyrovae.models.cvae.SigmaCVAE`.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 4 "Experimental setup", App. D "Initialization at
    Global Optima of the VAE Objective", App. G (MSE < 1e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch
from torch import nn

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.algorithms import PlainSVI
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.inference.fit import Fit, fit_module

__all__ = ["GroundTruthInit", "fit_decoder", "fit_encoder", "init_at_ground_truth", "regress_encoder"]


@dataclass(frozen=True)
class GroundTruthInit:
    """What the initialisation reached: the decoder's MSE and steps, the encoder's final −ELBO per point."""

    decoder_mse: float
    decoder_steps: int
    encoder_loss: float
    encoder_steps: int


def fit_decoder(decoder: nn.Module, z: torch.Tensor, fz: torch.Tensor, target_mse: float = 1e-4,
                max_steps: int = 20_000, lr: float = 1e-3, check_every: int = 100, require: bool = False) -> tuple[float, int]:
    """Full-batch Adam on ``mean((decoder(z) - fz)^2)`` until it is below ``target_mse``.

    The learning rate is halved whenever the MSE stops falling between checks. A decoder already
    below the target (e.g. loaded from the generating network, App. G) is returned untouched
    (``steps = 0``): Adam's first steps would move it away. Returns ``(mse, steps)``; with
    ``require=True`` a miss raises :class:`~pyrovae.errors.ConfigError`.
    """
    if z.dim() != 2 or fz.dim() != 2 or z.shape[0] != fz.shape[0]:
        raise DataError(f"need z (n, d) and f(z) (n, q) with the same n, got {tuple(z.shape)} and {tuple(fz.shape)}")
    if not target_mse > 0 or max_steps < 1 or not lr > 0:
        raise ConfigError("target_mse and lr must be positive and max_steps >= 1")
    dtype = next(decoder.parameters()).dtype
    z, fz = z.to(dtype), fz.to(dtype)
    with torch.no_grad():
        mse = float((decoder(z) - fz).pow(2).mean())
    best = math.inf

    def check(r: int, fitted: nn.Module) -> bool:
        """Every ``check_every`` steps: stop below the target; halve lr when the MSE stopped falling."""
        nonlocal mse, best
        with torch.no_grad():
            mse = float((fitted(z) - fz).pow(2).mean())
        if mse < target_mse:
            return True
        if mse > 0.999 * best:
            fit.scale_lr(0.5, floor=1e-6)
        best = min(best, mse)
        return False

    step = 0
    if not mse < target_mse:
        fit = Fit([decoder], lambda stack: (stack(z, shared=True) - fz).pow(2).mean((-2, -1)), steps=max_steps, lr=lr,
                  every=check_every, check=check, seeds=[0])  # full batch: its stream draws nothing
        step = fit.run()[0].steps
    if require and not mse < target_mse:
        raise ConfigError(f"the decoder reached MSE {mse:.2e} after {step} steps, not below {target_mse:g}")
    return mse, step


def regress_encoder(model: SigmaCVAE, data: Dataset, z: torch.Tensor, steps: int = 1000, lr: float = 3e-3,
                    scale: float = 0.01) -> float:
    """Warm start: full-batch Adam (one-cycle schedule) on ``mean((loc(x) - z)^2) + mean((log_var(x) -
    log scale^2)^2)``: the encoder mean goes to the true codes and q's standard deviation to the small
    ``scale`` (a broad random-init q makes the first ELBO gradients huge and undoes the warm start);
    returns the final MSE of the mean."""
    if steps < 0 or not lr > 0 or not scale > 0:
        raise ConfigError("steps must be >= 0, lr and scale positive")
    target_log_var = 2.0 * math.log(scale)
    z = z.to(data.observed.dtype)
    z = z if z.dim() == 2 else z[:, None]
    inputs = torch.cat([data.condition, data.observed], dim=-1)  # what model.encode feeds its encoder

    def loss(stack) -> torch.Tensor:
        loc, q_scale = stack(inputs, shared=True)
        return (loc - z).pow(2).mean((-2, -1)) + (2.0 * q_scale.log() - target_log_var).pow(2).mean((-2, -1))

    fit_module(model.encoder, loss, steps=steps, lr=lr, every=max(1, steps), schedule="one_cycle",
               seeds=[0])  # full batch: its stream draws nothing
    with torch.no_grad():
        return float((model.encode(data.condition, data.observed)[0] - z).pow(2).mean())


def fit_encoder(model: SigmaCVAE, data: Dataset, steps: int = 2000, lr: float = 1e-3, batch_size: int | None = 100,
                seed: int | None = None, z: torch.Tensor | None = None, warm_steps: int = 0) -> float:
    """Maximise the ELBO over the encoder only (decoder and noise frozen); returns the final −ELBO per
    point on the full data (one reparameterised z per point).

    With ``z`` (the true codes) and ``warm_steps > 0`` the encoder mean is first regressed on ``z``
    (:func:`regress_encoder`): from a random start, ELBO gradients through a folded decoder (Spiral Dots,
    Figure-8) leave the encoder in a poor local optimum within a few thousand steps, so without the warm
    start the "ground-truth" initialisation is not at the ground truth."""
    if steps < 0 or not lr > 0 or warm_steps < 0:
        raise ConfigError("steps and warm_steps must be >= 0 and lr positive")
    if seed is not None:
        pyro.set_rng_seed(seed)
    if z is not None and warm_steps > 0:
        regress_encoder(model, data, z, warm_steps)
    if steps > 0:
        settings = TrainSettings(K=steps, lr=lr, max_steps=steps, tol=0.0, batch_size=batch_size,
                                 trainable=("encoder",), checkpoint_every=10**9)
        with pyro.validation_enabled(False):
            Trainer(model, data, PlainSVI(), settings, seeds=None if seed is None else [seed]).run()
    terms = model.terms(data.condition, data.observed)
    return float((terms["recon"] + terms["kl"]).mean())


def init_at_ground_truth(model: SigmaCVAE, data: Dataset, z: torch.Tensor | None = None, fz: torch.Tensor | None = None,
                         target_mse: float = 1e-4, decoder_steps: int = 20_000, encoder_steps: int = 2000,
                         lr: float = 1e-3, seed: int | None = None, require: bool = False,
                         encoder_warm_steps: int = 0) -> GroundTruthInit:
    """Decoder by regression on the true ``(z, f(z))`` (default ``data.truth['z']``, ``['fz']``), then the
    encoder by the ELBO with the decoder fixed (after ``encoder_warm_steps`` of regression of its mean on
    the true z, :func:`fit_encoder`). The model must be unconditional with ``latent_dim`` equal to the true
    codes' dimension."""
    z = data.truth.get("z") if z is None else z
    fz = data.truth.get("fz") if fz is None else fz
    if z is None or fz is None:
        raise DataError(f"{data.name}: initialisation at the ground truth needs the true z and f(z)")
    z = z if z.dim() == 2 else z[:, None]
    if model.condition_dim != 0 or z.shape[1] != model.latent_dim or fz.shape[1] != model.observed_dim:
        raise ConfigError(f"model (x_dim {model.condition_dim}, latent {model.latent_dim}, y {model.observed_dim}) does not match "
                          f"the truth (z {tuple(z.shape)}, f(z) {tuple(fz.shape)})")
    if seed is not None:
        torch.manual_seed(seed)
    mse, dsteps = fit_decoder(model.decoder, z, fz, target_mse, decoder_steps, lr, require=require)
    loss = fit_encoder(model, data, encoder_steps, lr, seed=seed, z=z, warm_steps=encoder_warm_steps)
    return GroundTruthInit(mse, dsteps, loss, encoder_steps)
