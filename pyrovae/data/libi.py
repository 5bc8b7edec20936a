r"""The four synthetic data sets of Yacoby, Pan & Doshi-Velez (2020), Appendix E (Table 1).

* ``linear-jtex`` — Eq. 3: :math:`x = \mathrm{Cholesky}(AA^\top + B) z + \varepsilon`,
  :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 I - B)`, :math:`\sigma_\varepsilon^2 = 0.01`, ``B = 0.006 I``,
  ``A = [[0.75, 0.25], [1.5, -1.0]]``.
* ``cubic-jtex`` — the same with the element-wise cube: :math:`x = (\mathrm{Cholesky}(AA^\top + B) z)^3 + \varepsilon`.
* ``gaussian-2to4`` — :math:`x = z^\top A + \varepsilon`, ``A`` 2 × 4 as printed, :math:`\varepsilon \sim N(0, 10^{-6} I)`.
* ``mobius`` — :math:`x = f(z) + \varepsilon`, :math:`\sigma_\varepsilon^2 = 10^{-5}`, ``f`` a neural network fitted
  to the Möbius transform :math:`m(z) = (az + b)/(cz + d)` (complex arithmetic, :math:`z = z_1 + i z_2`,
  a = 1, b = 1 + 4i, c = 1, d = 7 + 4i) on draws from the prior, as the paper does. The fit is
  deterministic from ``surrogate_seed`` and is kept in memory only (:func:`mobius_surrogate`).

Every data set has 500 training, validation and test points (``n`` per split) and the paper uses
five per kind: ``index`` 0-4 picks one; the draws come from ``SeedSequence([seed, index, kind])``.
:func:`libi_splits` returns the three splits; the registered factories return one split.

Each :class:`~pyrovae.data.base.Dataset` has ``x`` with zero columns (unconditional data in ``y``)
and ``truth`` holding the true codes ``z``, the noise variance and the generating decoder.

References:
    Yacoby, Pan & Doshi-Velez (2020), Appendix E.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.optim import Minimiser

__all__ = ["LIBI_DATASETS", "A_JTEX", "B_JTEX", "A_GAUSSIAN", "JTExMean", "mobius", "mobius_surrogate", "true_decoder",
           "libi_splits", "linear_jtex", "cubic_jtex", "gaussian_2to4", "mobius_data"]

A_JTEX = torch.tensor([[0.75, 0.25], [1.5, -1.0]], dtype=torch.float64)
B_JTEX = torch.tensor([0.006, 0.006], dtype=torch.float64)
SIGMA2_JTEX = 0.01
A_GAUSSIAN = torch.tensor([[-0.7074, 0.0995, 0.0286, 0.1240], [0.7074, 0.9948, -0.9995, 0.9920]], dtype=torch.float64)
SIGMA2_GAUSSIAN = 1e-6
SIGMA2_MOBIUS = 1e-5
MOBIUS_COEFFS = {"a": (1.0, 0.0), "b": (1.0, 4.0), "c": (1.0, 0.0), "d": (7.0, 4.0)}
LIBI_DATASETS = ("linear-jtex", "cubic-jtex", "gaussian-2to4", "mobius")
SPLITS = ("train", "validation", "test")


def mobius(z: torch.Tensor, coeffs: dict = MOBIUS_COEFFS) -> torch.Tensor:
    r""":math:`m(z) = (az + b)/(cz + d)` with ``z[..., 0]`` the real and ``z[..., 1]`` the imaginary part."""
    zc = torch.complex(z[..., 0], z[..., 1])
    a, b, c, d = (complex(*coeffs[k]) for k in "abcd")
    m = (a * zc + b) / (c * zc + d)
    return torch.stack([m.real, m.imag], dim=-1)


class MobiusNet(nn.Sequential):
    """The surrogate's architecture: 2 → 50 → 50 → 2 with tanh (also the learned decoder's, App. E)."""

    def __init__(self, width: int = 50):
        super().__init__(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2))


@functools.lru_cache(maxsize=4)
def _fitted_state(surrogate_seed: int, points: int, iterations: int) -> dict:
    gen = torch.Generator().manual_seed(surrogate_seed)
    with torch.random.fork_rng():
        torch.manual_seed(surrogate_seed)
        net = MobiusNet().double()
    z = torch.randn(points, 2, generator=gen, dtype=torch.float64)
    target = mobius(z)
    Minimiser.lbfgs(net.parameters(), max_iter=iterations).run(lambda: (net(z) - target).pow(2).mean(), 1)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def mobius_surrogate(surrogate_seed: int = 0, points: int = 2000, iterations: int = 400) -> MobiusNet:
    """A :class:`MobiusNet` fitted by LBFGS (mean squared error) to :func:`mobius` on ``points`` prior
    draws; deterministic in ``surrogate_seed``, memoised in this process, never written to disk."""
    net = MobiusNet().double()
    net.load_state_dict(_fitted_state(int(surrogate_seed), int(points), int(iterations)))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class JTExMean(nn.Module):
    r"""The mean of LinearJTEx and CubicJTEx: :math:`\mathrm{Cholesky}(AA^\top + B) z`, cubed element-wise for
    CubicJTEx (Eq. 3 and App. E). The same map as :class:`pyrovae.models.linear.CholeskyDecoder` with nothing
    learned; the data layer keeps its own copy so that it imports no model."""

    def __init__(self, a: torch.Tensor, b_diag: torch.Tensor, cube: bool):
        super().__init__()
        self.register_buffer("weight", torch.linalg.cholesky(a @ a.T + torch.diag(b_diag)))
        self.cube = bool(cube)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z @ self.weight.T
        return h.pow(3) if self.cube else h


def true_decoder(kind: str) -> tuple[nn.Module, torch.Tensor]:
    """The generating mean function and the noise variance per output of data set ``kind``."""
    if kind in ("linear-jtex", "cubic-jtex"):
        return JTExMean(A_JTEX, B_JTEX, cube=kind == "cubic-jtex"), SIGMA2_JTEX - B_JTEX
    if kind == "gaussian-2to4":
        lin = nn.Linear(2, 4, bias=False).double()
        with torch.no_grad():
            lin.weight.copy_(A_GAUSSIAN.T)
        lin.weight.requires_grad_(False)
        return lin, torch.full((4,), SIGMA2_GAUSSIAN, dtype=torch.float64)
    if kind == "mobius":
        return mobius_surrogate(), torch.full((2,), SIGMA2_MOBIUS, dtype=torch.float64)
    raise UnknownNameError(f"unknown Yacoby, Pan & Doshi-Velez (2020) data set {kind!r}; known: {', '.join(LIBI_DATASETS)}")


def libi_splits(kind: str, index: int = 0, n: int = 500, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> dict[str, Dataset]:
    """The ``train``, ``validation`` and ``test`` splits (``n`` points each) of data set ``index`` of ``kind``,
    in ``dtype`` (float32 as every :class:`Dataset`; the trainer rebuilds data sets in float32)."""
    if kind not in LIBI_DATASETS:
        raise UnknownNameError(f"unknown Yacoby, Pan & Doshi-Velez (2020) data set {kind!r}; known: {', '.join(LIBI_DATASETS)}")
    if int(index) != index or index < 0:
        raise ConfigError(f"index must be a non-negative integer, got {index!r}")
    if int(n) != n or n < 2:
        raise ConfigError(f"n must be an integer >= 2, got {n!r}")
    decoder, noise_var = true_decoder(kind)
    ss = np.random.SeedSequence([int(seed), int(index), LIBI_DATASETS.index(kind)])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    z = torch.randn(3 * n, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        mean = decoder(z)
    observed = mean + noise_var.sqrt() * torch.randn(mean.shape, generator=gen, dtype=torch.float64)
    out = {}
    for i, split in enumerate(SPLITS):
        sl = slice(i * n, (i + 1) * n)
        out[split] = Dataset(kind, torch.zeros(n, 0, dtype=torch.float64), observed[sl],
                             truth={"z": z[sl], "noise_var": noise_var, "decoder": decoder},
                             params={"kind": kind, "index": int(index), "n": int(n), "seed": int(seed), "split": split})
        out[split].condition, out[split].observed = out[split].condition.to(dtype), observed[sl].to(dtype)  # Dataset itself stores float32
    return out


def _one(kind: str, n: int, index: int, split: str, seed: int) -> Dataset:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return libi_splits(kind, index, n, seed)[split]


def linear_jtex(n: int = 500, index: int = 0, split: str = "train", seed: int = 0) -> Dataset:
    return _one("linear-jtex", n, index, split, seed)


def cubic_jtex(n: int = 500, index: int = 0, split: str = "train", seed: int = 0) -> Dataset:
    return _one("cubic-jtex", n, index, split, seed)


def gaussian_2to4(n: int = 500, index: int = 0, split: str = "train", seed: int = 0) -> Dataset:
    return _one("gaussian-2to4", n, index, split, seed)


def mobius_data(n: int = 500, index: int = 0, split: str = "train", seed: int = 0) -> Dataset:
    return _one("mobius", n, index, split, seed)
