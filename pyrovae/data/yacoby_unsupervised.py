r"""The unsupervised pedagogical data sets of Yacoby, Pan & Doshi-Velez (2021), Appendix G.

Every example draws :math:`z \sim N(0, 1)` and :math:`x = f(z) + \varepsilon`,
:math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 I)`, with the ground-truth :math:`f` below
(:math:`\Phi` the standard normal CDF):

* ``figure8`` (G.1, :math:`\sigma_\varepsilon^2 = 0.02`): :math:`u = (0.6 + 1.8\Phi(z))\pi`,
  :math:`f = (\tfrac{\sqrt2}{2}\cos u / (\sin^2 u + 1),\ \sqrt2 \cos u \sin u / (\sin^2 u + 1))` —
  a lemniscate of Bernoulli: with :math:`X = \sqrt2 f_1`, :math:`Y = f_2/\sqrt2`,
  :math:`(X^2 + Y^2)^2 = X^2 - Y^2`.
* ``circle`` (G.2, 0.01): :math:`f = (\cos 2\pi\Phi(z), \sin 2\pi\Phi(z))`.
* ``absolute`` (G.3, 0.01): :math:`f = (|z|, |z|)`. Eq. 35 prints :math:`|\Phi(z)|`, which equals
  :math:`\Phi(z)` (one-to-one, unimodal posteriors) and contradicts the example's stated purpose
  (Sec. 6: ":math:`f_\theta(z) = |z|`, there are two values of z that could have generated every x");
  we follow Sec. 6.
* ``clusters`` (G.4, 0.2): :math:`u = 2\pi / (1 + e^{-\pi z/2})`,
  :math:`t = 2\tanh(10u - 20\lfloor u/2\rfloor - 10) + 4\lfloor u/2\rfloor + 2`,
  :math:`f = (\cos t, \sin t)`; the plateaus (the clusters) sit at angles :math:`t = 0, 4, 8, 12`
  (:data:`CLUSTER_ANGLES`).
* ``spiral`` (G.5, Spiral Dots, 0.01): :math:`u = 4\pi / (1 + e^{-\pi z/2})`,
  :math:`t = \tanh(10u - 20\lfloor u/2\rfloor - 10) + 2\lfloor u/2\rfloor + 1`,
  :math:`f = (t\cos t, t \sin t)`.

``embed=True`` gives the 5-D version of Sec. 8 (Case B): :math:`x = f(z)^\top A + \varepsilon` with
:data:`A_EMBED` (footnote 3, 2 × 5) and :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 I_5)` — the paper
does not say where the noise enters; adding it after the map keeps the data non-degenerate.

Splits: 5,000 / 2,000 / 2,000 train / validation / test points; ``index`` 0-4 picks one of the
paper's five versions, drawn from ``SeedSequence([seed, index, kind])``. By default the data are
generated from the analytic :math:`f`; ``mean=`` substitutes another mean function, e.g. the network
fitted to :math:`f` from which the paper generates its data (App. G;
:mod:`pyrovae.papers.yacoby_2021_failure_modes.surrogate_networks`), which the Yacoby, Pan & Doshi-Velez (2021) experiments use. Each
:class:`~pyrovae.data.base.Dataset` has zero conditioning columns; ``truth`` holds the true codes
``z``, ``fz`` = :math:`f(z)` and ``noise_var``.

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of Variational Autoencoders and Their Effects on
    Downstream Tasks* (Yacoby, Pan & Doshi-Velez 2021), Sec. 5.3, 6, 8 and Appendix G.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.validation import integer_at_least

__all__ = ["KINDS", "NOISE_VAR", "A_EMBED", "CLUSTER_ANGLES", "SPLIT_SIZES", "ground_truth", "figure8_f", "circle_f",
           "absolute_f", "clusters_f", "spiral_f", "yacoby_splits", "yacoby_dataset"]

KINDS = ("figure8", "circle", "absolute", "clusters", "spiral")
NOISE_VAR = {"figure8": 0.02, "circle": 0.01, "absolute": 0.01, "clusters": 0.2, "spiral": 0.01}
A_EMBED = torch.tensor([[1.0, 0.0, 0.5, 0.2, -0.8], [0.0, 1.0, -0.5, 0.3, -0.1]], dtype=torch.float64)
CLUSTER_ANGLES = (0.0, 4.0, 8.0, 12.0)
SPLITS = ("train", "validation", "test")
SPLIT_SIZES = {"train": 5000, "validation": 2000, "test": 2000}


def _phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _flat(z: torch.Tensor) -> torch.Tensor:
    """Accept ``(..., 1)`` or ``(...)``; return ``(...)``."""
    return z[..., 0] if z.dim() > 0 and z.shape[-1] == 1 else z


def figure8_f(z: torch.Tensor) -> torch.Tensor:
    u = (0.6 + 1.8 * _phi(_flat(z))) * math.pi
    s, c = torch.sin(u), torch.cos(u)
    den = s**2 + 1.0
    return torch.stack([math.sqrt(2) / 2 * c / den, math.sqrt(2) * c * s / den], dim=-1)


def circle_f(z: torch.Tensor) -> torch.Tensor:
    a = 2 * math.pi * _phi(_flat(z))
    return torch.stack([torch.cos(a), torch.sin(a)], dim=-1)


def absolute_f(z: torch.Tensor) -> torch.Tensor:
    a = _flat(z).abs()
    return torch.stack([a, a], dim=-1)


def _steps(z: torch.Tensor, turns: float, height: float) -> torch.Tensor:
    u = turns * math.pi / (1.0 + torch.exp(-0.5 * math.pi * _flat(z)))
    k = torch.floor(u / 2)
    return height * torch.tanh(10 * u - 20 * k - 10) + 2 * height * k + height


def clusters_f(z: torch.Tensor) -> torch.Tensor:
    t = _steps(z, 2.0, 2.0)
    return torch.stack([torch.cos(t), torch.sin(t)], dim=-1)


def spiral_f(z: torch.Tensor) -> torch.Tensor:
    t = _steps(z, 4.0, 1.0)
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=-1)


_F = {"figure8": figure8_f, "circle": circle_f, "absolute": absolute_f, "clusters": clusters_f, "spiral": spiral_f}


def _check_kind(kind: str) -> None:
    if kind not in _F:
        raise UnknownNameError(f"unknown Yacoby, Pan & Doshi-Velez (2021) data set {kind!r}; known: {', '.join(KINDS)}")


def ground_truth(kind: str, embed: bool = False):
    r"""``(f, noise_var)``: the generating mean function (``(n, 1)`` or ``(n,)`` z → ``(n, 2)``, or
    ``(n, 5)`` with ``embed``) and :math:`\sigma_\varepsilon^2`."""
    _check_kind(kind)
    base = _F[kind]
    if not embed:
        return base, NOISE_VAR[kind]

    return _embedded(base), NOISE_VAR[kind]


def _embedded(base):
    def f(z: torch.Tensor) -> torch.Tensor:
        out = base(z)
        return out @ A_EMBED.to(out.dtype)

    f.__name__ = f"{base.__name__}_embedded"
    return f


def yacoby_splits(kind: str, index: int = 0, seed: int = 0, embed: bool = False,
                  sizes: dict[str, int] | None = None, mean=None) -> dict[str, Dataset]:
    """``train``/``validation``/``test`` of version ``index`` of ``kind`` (sizes default 5000/2000/2000).

    ``mean`` replaces the analytic 2-D :math:`f` (``(n, 1)`` z → ``(n, 2)``), e.g. the fitted generating
    network of App. G (:func:`pyrovae.papers.yacoby_2021_failure_modes.surrogate_networks.network_mean`); ``embed`` still applies A after it."""
    _check_kind(kind)
    integer_at_least("index", index, 0)
    sizes = dict(SPLIT_SIZES, **(sizes or {}))
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ConfigError(f"unknown split(s) {sorted(unknown)}; known: {', '.join(SPLITS)}")
    counts = [integer_at_least(f"the {s} size", sizes[s], 2) for s in SPLITS]
    f, noise_var = ground_truth(kind, embed)
    if mean is not None:
        f = _embedded(mean) if embed else mean
    ss = np.random.SeedSequence([int(seed), int(index), KINDS.index(kind), int(bool(embed))])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    total = sum(counts)
    z = torch.randn(total, 1, generator=gen, dtype=torch.float64)
    fz = f(z)
    observed = fz + math.sqrt(noise_var) * torch.randn(fz.shape, generator=gen, dtype=torch.float64)
    name = f"yacoby-{kind}" + ("-5d" if embed else "")
    out, start = {}, 0
    for split, n in zip(SPLITS, counts):
        sl = slice(start, start + n)
        start += n
        out[split] = Dataset(name, torch.zeros(n, 0), observed[sl],
                             truth={"z": z[sl].float(), "fz": fz[sl].float(), "noise_var": noise_var},
                             params={"kind": kind, "index": int(index), "seed": int(seed), "embed": bool(embed),
                                     "split": split, "mean": "analytic" if mean is None else "network"})
    return out


def yacoby_dataset(kind: str, n: int | None = None, index: int = 0, split: str = "train", seed: int = 0,
                   embed: bool = False) -> Dataset:
    """One split; ``n`` overrides that split's size."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    sizes = None if n is None else {split: n}
    return yacoby_splits(kind, index, seed, embed, sizes)[split]


def _factory(kind: str):
    def factory(n: int | None = None, index: int = 0, split: str = "train", seed: int = 0,
                embed: bool = False) -> Dataset:
        return yacoby_dataset(kind, n, index, split, seed, embed)

    factory.__name__ = f"yacoby_{kind}"
    return factory


FACTORIES = {kind: _factory(kind) for kind in KINDS}
