r"""A small trainer for the M2 model (seed 001, Eq. 5): plain torch Adam over the module's parameters.

Every step takes one unlabelled batch and one labelled batch and minimises

.. math::
    -\frac{1}{N+M}\Big(\frac{N}{B_u}\sum_{b} \mathcal U(x_b) + \frac{M}{B_l}\Big[\gamma \sum_{b}\mathcal L(x_b, y_b)
    + \alpha \sum_b \log q(y_b|x_b)\Big]\Big),

an unbiased estimate of :math:`-J/(N+M)`, with :math:`\mathcal U, \mathcal L` the ELBO bounds
(:func:`pyrovae.models.m2.m2_elbo_loss`; Pyro's ``differentiable_loss``, no global parameter store)
or the IWAE bounds (:meth:`M2.iwae_loss`). An epoch is one pass over the unlabelled points;
labelled batches are drawn at random (the labelled set is ten times smaller).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, TrainingDiverged
from pyrovae.models.m2 import M2, m2_elbo_loss

__all__ = ["M2TrainResult", "m2_step_loss", "train_m2", "M2_OBJECTIVES"]

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


def train_m2(model: M2, data: SemiSupervisedDataset, objective: str = "elbo", epochs: int = 100,
             batch_size: int = 100, lr: float = 1e-3, gamma: float = 1.0, alpha: float = 0.0,
             particles: int = 10, seed: int = 0) -> M2TrainResult:
    """Train ``model`` in place on ``data`` (App. D: Adam, lr 0.001, batches of 100, 100 epochs)."""
    if objective not in M2_OBJECTIVES:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: {', '.join(M2_OBJECTIVES)}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("particles", particles)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if not lr > 0 or gamma < 0 or alpha < 0:
        raise ConfigError(f"need lr > 0, gamma >= 0, alpha >= 0; got {lr}, {gamma}, {alpha}")
    x_l, y_l, x_u = data.split()
    if len(x_l) == 0 or len(x_u) == 0:
        raise DataError("M2 training needs both labelled and unlabelled points")
    if model.discrete:
        y_l = y_l.reshape(-1)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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
