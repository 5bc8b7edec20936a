r"""A small trainer for the M2 model (seed 001, Eq. 5): plain torch Adam over the module's parameters.

Every step takes one unlabelled batch and one labelled batch and minimises

.. math::
    -\frac{1}{N+M}\Big(\frac{N}{B_u}\sum_{b} \mathcal U(x_b) + \frac{M}{B_l}\Big[\gamma \sum_{b}\mathcal L(x_b, y_b)
    + \alpha \sum_b \log q(y_b|x_b)\Big]\Big),

an unbiased estimate of :math:`-J/(N+M)`, with :math:`\mathcal U, \mathcal L` the ELBO bounds
(:func:`pyrovae.models.m2.m2_elbo_loss`; Pyro's ``differentiable_loss``, no global parameter store)
or the IWAE bounds (:meth:`M2.iwae_loss`). An epoch is one pass over the unlabelled points;
labelled batches are drawn at random (the labelled set is ten times smaller).
``train_m2(..., parameters="encoder")`` freezes the decoder (the encoder fit of the ground-truth
initialisation, App. D); :func:`m2_objective` is the full-data per-point :math:`-J/(N+M)` used to
choose between restarts on validation data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, TrainingDiverged
from pyrovae.models.m2 import M2, m2_elbo_loss

__all__ = ["M2TrainResult", "m2_step_loss", "m2_objective", "train_m2", "M2_OBJECTIVES", "encoder_parameters"]

M2_OBJECTIVES = ("elbo", "iwae")


@dataclass
class M2TrainResult:
    model: M2
    history: list[dict] = field(default_factory=list)  # one row per epoch: epoch, loss, seconds
    seconds: float = 0.0


def m2_step_loss(model: M2, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor, n_u: int, n_l: int,
                 objective: str = "elbo", gamma: float = 1.0, alpha: float = 0.0, particles: int = 10) -> torch.Tensor:
    """The per-point loss of one step (module docstring)."""
    if objective == "elbo":
        lu, ll = m2_elbo_loss(model, x_u), m2_elbo_loss(model, x_l, y_l, gamma, alpha)
    elif objective == "iwae":
        lu, ll = model.iwae_loss(x_u, particles=particles), model.iwae_loss(x_l, y_l, gamma, alpha, particles)
    else:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: {', '.join(M2_OBJECTIVES)}")
    return (n_u / x_u.shape[0] * lu + n_l / x_l.shape[0] * ll) / (n_u + n_l)


def encoder_parameters(model: M2) -> list[torch.nn.Parameter]:
    """Every parameter of the guide (``q(y|x)`` and the ``z`` encoders), none of the decoder's."""
    return [p for name, p in model.named_parameters() if not name.startswith("decoder.")]


def _split(model: M2, data: SemiSupervisedDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x_l, y_l, x_u = data.split()
    if len(x_l) == 0 or len(x_u) == 0:
        raise DataError("M2 training needs both labelled and unlabelled points")
    return x_l, (y_l.reshape(-1) if model.discrete else y_l), x_u


def m2_objective(model: M2, data: SemiSupervisedDataset, objective: str = "elbo", gamma: float = 1.0,
                 alpha: float = 0.0, particles: int = 10, draws: int = 3, seed: int = 0) -> float:
    """Per-point :math:`-J/(N+M)` of Eq. 5 on all of ``data`` (ELBO or IWAE bounds), averaged over
    ``draws`` Monte Carlo evaluations with a fixed seed; lower is better."""
    x_l, y_l, x_u = _split(model, data)
    torch.manual_seed(int(seed))
    vals = [m2_step_loss(model, x_u, x_l, y_l, len(x_u), len(x_l), objective, gamma, alpha, particles).item()
            for _ in range(int(draws))]
    return sum(vals) / len(vals)


def train_m2(model: M2, data: SemiSupervisedDataset, objective: str = "elbo", epochs: int = 100,
             batch_size: int = 100, lr: float = 1e-3, gamma: float = 1.0, alpha: float = 0.0,
             particles: int = 10, seed: int = 0, parameters: str = "all") -> M2TrainResult:
    """Train ``model`` in place on ``data`` (App. D: Adam, lr 0.001, batches of 100, 100 epochs);
    ``parameters="encoder"`` keeps the decoder fixed."""
    if objective not in M2_OBJECTIVES:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: {', '.join(M2_OBJECTIVES)}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("particles", particles)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if not lr > 0 or gamma < 0 or alpha < 0:
        raise ConfigError(f"need lr > 0, gamma >= 0, alpha >= 0; got {lr}, {gamma}, {alpha}")
    if parameters not in ("all", "encoder"):
        raise ConfigError(f"parameters must be 'all' or 'encoder', got {parameters!r}")
    x_l, y_l, x_u = _split(model, data)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    params = list(model.parameters()) if parameters == "all" else encoder_parameters(model)
    frozen = [] if parameters == "all" else list(model.decoder.parameters())
    for p in frozen:
        p.requires_grad_(False)
    try:
        return _loop(model, params, x_u, x_l, y_l, objective, epochs, batch_size, lr, gamma, alpha, particles, gen)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _loop(model, params, x_u, x_l, y_l, objective, epochs, batch_size, lr, gamma, alpha, particles, gen) -> M2TrainResult:
    opt = torch.optim.Adam(params, lr=lr)
    n_u, n_l = len(x_u), len(x_l)
    b_l = min(int(batch_size), n_l)
    result = M2TrainResult(model)
    start = time.perf_counter()
    for epoch in range(int(epochs)):
        order = torch.randperm(n_u, generator=gen)
        total, steps = 0.0, 0
        for i in range(0, n_u, int(batch_size)):
            iu = order[i:i + int(batch_size)]
            il = torch.randint(n_l, (b_l,), generator=gen)
            loss = m2_step_loss(model, x_u[iu], x_l[il], y_l[il], n_u, n_l, objective, gamma, alpha, particles)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"M2 loss became {loss.item()} in epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        result.history.append({"epoch": epoch + 1, "loss": total / steps, "seconds": time.perf_counter() - start})
    result.seconds = time.perf_counter() - start
    return result
