r"""Diagnostics of semi-supervised VAEs (Yacoby, Pan & Doshi-Velez 2021, Sec. 7, App. E.3): functional collapse and the
predictive quality of :math:`q(y|x)`.

**Functional collapse** is a decoder that ignores ``y``: :math:`f_\theta(z, y) \approx f_\theta(z, y')`.
:func:`decoder_spread` measures :math:`\mathbb E_{z \sim N(0,I)} \|f(z, y_1) - f(z, y_2)\|` for two labels;
:func:`functional_collapse` sets it against the same quantity of the true :math:`f`, so a score
near 0 is collapse and near 1 is a decoder as label-sensitive as the truth. (The spread compares
the two labels at the *same* z, so it is invariant to reparameterisations of z shared by both.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pyrovae.errors import DataError
from pyrovae.metrics.two_sample import smooth_knn_statistic

__all__ = ["decoder_spread", "functional_collapse", "CollapseScore", "label_accuracy", "cohort_knn"]


def _labels(model, value, n: int) -> torch.Tensor:
    if model.discrete:
        return torch.full((n,), int(value), dtype=torch.long)
    return torch.full((n, model.label_dim), float(value))


@torch.no_grad()
def decoder_spread(model, y1, y2, num_z: int = 2000, seed: int = 0) -> float:
    r""":math:`\mathbb E_z \|f_\theta(z, y_1) - f_\theta(z, y_2)\|` over ``num_z`` draws of the prior."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num_z, model.latent_dim, generator=g, dtype=model.sigma.dtype)
    return (model.decode(z, _labels(model, y1, num_z)) - model.decode(z, _labels(model, y2, num_z))).norm(dim=-1).mean().item()


@dataclass(frozen=True)
class CollapseScore:
    learned: float  # E_z ||f_theta(z, y1) - f_theta(z, y2)||
    truth: float  # the same for the true f
    score: float  # learned / truth: ~0 is functional collapse


def functional_collapse(model, true_f: Callable[[torch.Tensor, float], torch.Tensor], y1, y2,
                        num_z: int = 2000, seed: int = 0) -> CollapseScore:
    """:func:`decoder_spread` of ``model`` against that of ``true_f(z, y)`` (1-D ``z`` draws)."""
    learned = decoder_spread(model, y1, y2, num_z, seed)
    z = torch.randn(num_z, generator=torch.Generator().manual_seed(seed))
    truth = (true_f(z, y1) - true_f(z, y2)).norm(dim=-1).mean().item()
    return CollapseScore(learned, truth, learned / truth if truth > 0 else float("nan"))


@torch.no_grad()
def label_accuracy(model, observed: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How well ``q(y|x)`` predicts held-out labels: accuracy (discrete) or RMSE and sign agreement
    of its mean (continuous)."""
    if observed.shape[0] != labels.shape[0] or observed.shape[0] == 0:
        raise DataError("need as many labels as points, and at least one")
    if model.discrete:
        pred = model.y_logits(observed).argmax(-1)
        return {"accuracy": (pred == labels.reshape(-1).long()).float().mean().item()}
    loc, _ = model.y_encoder(observed)
    labels = labels.reshape(loc.shape)
    return {"rmse": (loc - labels).pow(2).mean().sqrt().item(),
            "sign_accuracy": ((loc > 0) == (labels > 0)).float().mean().item()}


@torch.no_grad()
def cohort_knn(model, y, reference: torch.Tensor, alpha: float = 1.0, seed: int = 0) -> float:
    """Smooth kNN statistic between ``len(reference)`` draws of ``p_θ(x | y)`` and ``reference``
    (draws of the true ``p(x | y)``); lower is better."""
    torch.manual_seed(seed)
    xs, _ = model.sample(reference.shape[0], y=y)
    return smooth_knn_statistic(xs, reference.to(xs.dtype), alpha=alpha).value.item()
