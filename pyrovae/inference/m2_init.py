r"""Initialisation of the M2 model at the ground truth (Yacoby, Pan & Doshi-Velez 2021, App. D).

"The decoder function :math:`f_\theta` is initialized to the ground-truth using full supervision
given the ground-truth z's and :math:`f_{\theta_{GT}}`. The encoder is initialized to
:math:`\phi_{GT}` by fixing the decoder at the ground-truth and maximizing the ELBO (with 10 random
restarts) ... we select the restart that yields the lowest value of the objective function."

* :func:`fit_m2_decoder` regresses :math:`f_\theta(z, y)` on the true :math:`f(z, y)` at the data's
  true codes and labels (all points, labelled or not), reusing
  :func:`pyrovae.inference.init.fit_decoder` on the decoder's input :math:`[z, \text{features}(y)]`.
* :func:`init_m2_at_ground_truth` (which can reuse a seed's decoder fit across starts: ``decoders``) then
  fits the guide (``q(y|x)`` and the ``z`` encoders) with the decoder frozen by the semi-supervised objective (Eq. 5, ELBO bounds by default), ``restarts``
  times from fresh random encoder weights — the restarts train as one batch
  (:func:`~pyrovae.inference.m2_training.train_m2_batch`; restart ``r`` is the run seeded
  ``seed + 1 + r`` alone) — and keeps the restart with the lowest validation
  :math:`-J` (:func:`pyrovae.inference.m2_training.m2_objective`).

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 4, App. D, App. H ("MSE < 1e-4").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, TrainingDiverged
from pyrovae.inference.init import fit_decoder
from pyrovae.inference.m2_training import m2_objective, train_m2_batch
from pyrovae.models.m2 import M2
from pyrovae.validation import integer_at_least

__all__ = ["M2Init", "fit_m2_decoder", "init_m2_at_ground_truth"]


@dataclass
class M2Init:
    """What the initialisation reached."""

    decoder_mse: float
    decoder_steps: int
    best_restart: int
    validation_objectives: list[float] = field(default_factory=list)  # -J per point, one per restart


def _labels(model: M2, labels: torch.Tensor) -> torch.Tensor:
    if model.discrete:
        return labels.reshape(-1).round().long()
    return labels.reshape(labels.shape[0], -1)


def fit_m2_decoder(model: M2, z: torch.Tensor, labels: torch.Tensor, fz: torch.Tensor, target_mse: float = 1e-4,
                   max_steps: int = 20_000, lr: float = 1e-3) -> tuple[float, int]:
    """Regress ``model.decoder`` on ``fz = f(z, y)`` at the given true codes and labels; returns
    ``(mse, steps)`` (:func:`pyrovae.inference.init.fit_decoder`)."""
    z = z.reshape(z.shape[0], -1)
    if z.shape[1] != model.latent_dim:
        raise ConfigError(f"the model's latent dimension {model.latent_dim} is not the truth's {z.shape[1]}")
    if labels.shape[0] != z.shape[0] or fz.shape != (z.shape[0], model.observed_dim):
        raise DataError("need one label and one f(z, y) row of the data's width per true code")
    inputs = torch.cat([z, model.y_features(_labels(model, labels)).to(z.dtype)], -1)
    return fit_decoder(model.decoder, inputs, fz, target_mse, max_steps, lr)


def _reset(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()


def init_m2_at_ground_truth(model: M2, data: SemiSupervisedDataset, true_f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            validation: SemiSupervisedDataset, restarts: int = 10, objective: str = "elbo",
                            gamma: float = 1.0, alpha: float = 0.0, particles: int = 10, decoder_steps: int = 20_000,
                            encoder_epochs: int = 20, batch_size: int = 100, lr: float = 1e-3,
                            seed: int = 0, decoders: dict[tuple, tuple[dict, float, int]] | None = None) -> M2Init:
    """Decoder by regression on ``true_f(z, y)`` at ``data.truth['z']`` and ``data.labels``, then the
    guide by Eq. 5 with the decoder frozen, best of ``restarts`` on ``validation`` (App. D).
    ``model`` is left at the best restart.

    ``decoders`` keeps each seed's decoder fit, ``{(seed, decoder_steps, lr): (decoder state, mse, steps)}``, for
    the starts of one data set and one model shape, each a fresh model built after seeding with its seed: the
    regression depends on those only, not on γ, α, the objective or the restarts, so a seed seen before loads
    its fitted decoder instead of fitting it again, with the same weights (the restarts reseed the generator
    before they draw)."""
    integer_at_least("restarts", restarts)
    z = data.truth.get("z")
    if z is None:
        raise DataError(f"{data.name}: initialisation at the ground truth needs the true z")
    torch.manual_seed(int(seed))
    key = (int(seed), int(decoder_steps), float(lr))
    if decoders is not None and key in decoders:
        state, mse, steps = decoders[key]
        model.decoder.load_state_dict(state)
    else:
        z = torch.as_tensor(z, dtype=model.sigma.dtype)
        fz = true_f(z.reshape(-1), data.labels.reshape(-1)).to(model.sigma.dtype)
        mse, steps = fit_m2_decoder(model, z, data.labels, fz, max_steps=decoder_steps, lr=lr)
        if decoders is not None:
            decoders[key] = (copy.deepcopy(model.decoder.state_dict()), mse, steps)
    copies = []
    for r in range(int(restarts)):  # restart r: fresh guide weights from torch's generator seeded seed + 1 + r
        copy_r = copy.deepcopy(model)
        torch.manual_seed(int(seed) + 1 + r)
        for name, m in copy_r.named_children():
            if name != "decoder":
                _reset(m)
        copies.append(copy_r)
    fits = train_m2_batch(copies, data, objective, epochs=encoder_epochs, batch_size=batch_size, lr=lr, gamma=gamma,
                          alpha=alpha, particles=particles, seeds=[int(seed) + 1 + r for r in range(int(restarts))],
                          parameters="encoder")
    values = [m2_objective(c, validation, objective, gamma, alpha, particles, seed=int(seed))
              if fit.status != "nan" else math.nan for c, fit in zip(copies, fits)]
    if not any(math.isfinite(v) for v in values):
        raise TrainingDiverged(f"every one of the {len(values)} encoder restarts diverged or ended non-finite")
    best = min(range(len(values)), key=lambda r: values[r] if math.isfinite(values[r]) else math.inf)
    model.load_state_dict(copies[best].state_dict())
    return M2Init(mse, steps, best, values)
