r"""The semi-supervised semi-circle benchmarks of Yacoby, Pan & Doshi-Velez (2021), App. H.

Discrete Semi-Circle (Eq. 38): :math:`z \sim N(0,1)`, :math:`y \sim \mathrm{Bern}(1/2)`,

.. math::
    f(z, y) = [\cos a, \sin a], \qquad a = \mathbb 1(y=0)\,\pi\sqrt{\Phi(z)} + \mathbb 1(y=1)\,\pi\,\Phi(z)^3 ,

Continuous Semi-Circle (Eq. 39): :math:`y \sim N(0,1)`, :math:`h(y) = B^{-1}(\Phi(y); 0.2, 0.2)`,
:math:`a = h(y)\,\pi\sqrt{\Phi(z)} + (1 - h(y))\,\pi\,\Phi(z)^3`; both with
:math:`x = f(z, y) + \epsilon`, :math:`\epsilon \sim N(0, \sigma_\epsilon^2 I)`, :math:`\sigma_\epsilon^2 = 0.01`
(H.1 states it; H.2 does not, and we use the same). A fraction (10 %, App. D) of the points keep
their label.

The paper fits a surrogate network to :math:`f` (MSE < 1e-4) and generates from it; we generate
from the formula itself.

Layout: a :class:`SemiSupervisedDataset` keeps the library's convention that the modelled
quantity is ``y`` (here the 2-D points :math:`x` of the paper) with no conditioning columns;
the paper's labels are ``labels`` (n, 1) and ``labelled`` (n,) says which are observed.
``truth`` holds the latent ``z``, ``sigma`` and ``kind``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.validation import integer_at_least

__all__ = [
    "SemiSupervisedDataset", "semicircle_f", "discrete_semicircle", "continuous_semicircle",
    "sample_semicircle_cohort", "SEMICIRCLE_SIGMA",
]

SEMICIRCLE_SIGMA = 0.1  # sigma_eps^2 = 0.01 (App. H.1)
_KINDS = ("discrete", "continuous")


@dataclass
class SemiSupervisedDataset(Dataset):
    """A :class:`Dataset` whose ``y`` are the points and whose ``labels`` are partly observed."""

    labels: torch.Tensor | None = None
    labelled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.labels is None or self.labelled is None:
            raise DataError("a semi-supervised data set needs labels and a labelled mask")
        self.labels = torch.as_tensor(self.labels, dtype=torch.get_default_dtype()).reshape(len(self), -1)
        self.labelled = torch.as_tensor(self.labelled, dtype=torch.bool).reshape(-1)
        if self.labelled.shape[0] != len(self):
            raise DataError(f"the labelled mask has {self.labelled.shape[0]} entries for {len(self)} points")
        if not torch.isfinite(self.labels).all():
            raise DataError(f"{self.name}: labels contain NaN or infinite values")

    @property
    def points(self) -> torch.Tensor:
        """The paper's ``x``: what M2 models."""
        return self.observed

    def split(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_labelled, y_labelled, x_unlabelled)`` in the paper's notation."""
        return self.observed[self.labelled], self.labels[self.labelled], self.observed[~self.labelled]

    def to(self, device) -> "SemiSupervisedDataset":
        return SemiSupervisedDataset(self.name, self.condition.to(device), self.observed.to(device), dict(self.truth), dict(self.params),
                                     self.labels.to(device), self.labelled.to(device))


def _phi(z: np.ndarray) -> np.ndarray:
    return special.ndtr(z)


def semicircle_f(z, y, kind: str = "discrete") -> torch.Tensor:
    r"""The ground-truth :math:`f(z, y)` of Eq. 38 (``kind="discrete"``, ``y`` in {0, 1}) or Eq. 39
    (``"continuous"``, ``y`` real); broadcasts ``z`` and ``y`` (any shapes), returns ``(..., 2)``."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown semi-circle kind {kind!r}; known: {', '.join(_KINDS)}")
    z = np.asarray(torch.as_tensor(z, dtype=torch.float64), dtype=np.float64)
    y = np.asarray(torch.as_tensor(y, dtype=torch.float64), dtype=np.float64)
    p = _phi(z)
    if kind == "discrete":
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError("discrete semi-circle labels must be 0 or 1")
        w = (y == 0).astype(np.float64)
    else:
        w = stats.beta.ppf(_phi(y), 0.2, 0.2)  # h(y)
    angle = w * math.pi * np.sqrt(p) + (1.0 - w) * math.pi * p**3
    return torch.as_tensor(np.stack([np.cos(angle), np.sin(angle)], -1), dtype=torch.get_default_dtype())


def _check(n: int, labelled_fraction: float, sigma: float) -> None:
    integer_at_least("n", n, 2)
    if not 0.0 < labelled_fraction < 1.0:
        raise ConfigError(f"the labelled fraction must lie strictly between 0 and 1, got {labelled_fraction}")
    if not sigma >= 0.0 or not math.isfinite(sigma):
        raise ConfigError(f"sigma must be finite and >= 0, got {sigma}")


def _make(kind: str, n: int, labelled_fraction: float, sigma: float, seed: int) -> SemiSupervisedDataset:
    _check(n, labelled_fraction, sigma)
    n = int(n)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    y = rng.integers(0, 2, n).astype(np.float64) if kind == "discrete" else rng.standard_normal(n)
    x = semicircle_f(z, y, kind) + sigma * torch.as_tensor(rng.standard_normal((n, 2)), dtype=torch.get_default_dtype())
    m = max(1, int(round(labelled_fraction * n)))
    labelled = np.zeros(n, dtype=bool)
    labelled[rng.choice(n, size=m, replace=False)] = True
    name = f"{kind}-semicircle"
    return SemiSupervisedDataset(
        name, torch.zeros(n, 0), x,
        truth={"z": torch.as_tensor(z).reshape(-1, 1), "sigma": float(sigma), "kind": kind},
        params={"n": n, "labelled_fraction": labelled_fraction, "sigma": sigma, "seed": seed},
        labels=torch.as_tensor(y).reshape(-1, 1), labelled=torch.as_tensor(labelled),
    )


def discrete_semicircle(n: int = 5000, labelled_fraction: float = 0.1, sigma: float = SEMICIRCLE_SIGMA,
                        seed: int = 0) -> SemiSupervisedDataset:
    """Discrete Semi-Circle (Yacoby, Pan & Doshi-Velez 2021, App. H.1, Eq. 38)."""
    return _make("discrete", n, labelled_fraction, sigma, seed)


def continuous_semicircle(n: int = 5000, labelled_fraction: float = 0.1, sigma: float = SEMICIRCLE_SIGMA,
                          seed: int = 0) -> SemiSupervisedDataset:
    """Continuous Semi-Circle (Yacoby, Pan & Doshi-Velez 2021, App. H.2, Eq. 39)."""
    return _make("continuous", n, labelled_fraction, sigma, seed)


def sample_semicircle_cohort(kind: str, y: float, n: int, sigma: float = SEMICIRCLE_SIGMA, seed: int = 0) -> torch.Tensor:
    """``n`` draws of the true ``p(x | y)`` (Table 4's cohorts: y = 0, 1 or y = ±3.5)."""
    _check(n, 0.5, sigma)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(int(n))
    f = semicircle_f(z, np.full(int(n), float(y)), kind)
    return f + sigma * torch.as_tensor(rng.standard_normal((int(n), 2)), dtype=f.dtype)
