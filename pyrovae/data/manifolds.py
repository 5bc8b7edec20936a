r"""Data on low-dimensional manifolds: Berger & Sebag's 2-D curve and the hypersphere of Theorem 1.

**Berger & Sebag's artificial data** (Berger & Sebag 2020, §4.1, Fig. 3) — "a 1-D manifold in R², structured in
three regions with moderate, small and large noise", 100 fresh points per batch. The paper gives no
formula; this one is ours and fixed:

.. math::
    s \sim U(-2, 2), \qquad c(s) = (s,\ \sin \pi s), \qquad
    y = c(s) + \nu(s)\,\varepsilon,\quad \varepsilon \sim N(0, I_2),

with the noise standard deviation :math:`\nu(s) = 0.05` (moderate) for :math:`s < -2/3`,
:math:`0.01` (small) for :math:`-2/3 \le s < 2/3` and :math:`0.1` (large) for :math:`s \ge 2/3`
(isotropic noise, constant within each third of the curve). A perfect fit of the curve leaves a
residual of variance about :math:`\overline{\nu^2}/2 \approx 0.046^2` per coordinate — close to the
σ* = 0.043 the paper's LS-VAE learns. The data's own density is a 1-D integral,
:math:`p(y) = \tfrac14\int_{-2}^{2} N(y;\,c(s),\,\nu(s)^2 I)\,ds`, computed by quadrature in
:func:`berger_log_density`: its mean over the data, :math:`-H`, bounds every model's ELBO.

**Hypersphere** (Theorem 1): :math:`y = R\,g/\|g\|`, :math:`g\sim N(0, I_D)`, uniform on
:math:`S_{D-1}(R)`, no noise.

References:
    Berger & Sebag, "Variational Auto-Encoders: Not All Failures Are Equal" (2020):
    §3.1 (Theorem 1), §4.1, Fig. 3.
"""

from __future__ import annotations

import math

import torch

from pyrovae.data.stream import StreamDataset
from pyrovae.errors import ConfigError
from pyrovae.validation import integer_at_least

__all__ = [
    "BERGER_NOISE",
    "berger_curve",
    "berger_noise_sd",
    "berger_sample",
    "berger_manifold",
    "berger_log_density",
    "sphere_sample",
    "sphere",
]

S_RANGE = (-2.0, 2.0)
BERGER_NOISE = {"moderate": 0.05, "small": 0.01, "large": 0.1}
_BREAKS = (-2.0 / 3.0, 2.0 / 3.0)


def berger_curve(s: torch.Tensor) -> torch.Tensor:
    """The manifold :math:`c(s) = (s, \\sin \\pi s)`, shape ``s.shape + (2,)``."""
    return torch.stack([s, torch.sin(math.pi * s)], dim=-1)


def berger_noise_sd(s: torch.Tensor) -> torch.Tensor:
    """ν(s): 0.05 for s < −2/3 (moderate), 0.01 up to 2/3 (small), 0.1 beyond (large)."""
    nu = torch.full_like(s, BERGER_NOISE["small"])
    nu = torch.where(s < _BREAKS[0], torch.full_like(s, BERGER_NOISE["moderate"]), nu)
    return torch.where(s >= _BREAKS[1], torch.full_like(s, BERGER_NOISE["large"]), nu)


def berger_sample(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``(y, s)`` of the artificial data (torch's global generator unless one is given), on the
    generator's device."""
    n = integer_at_least("n", n)
    lo, hi = S_RANGE
    device = generator.device if generator is not None else None
    s = lo + (hi - lo) * torch.rand(n, generator=generator, device=device)
    eps = torch.randn(n, 2, generator=generator, device=device)
    return berger_curve(s) + berger_noise_sd(s)[:, None] * eps, s


def berger_manifold(n: int = 2000, seed: int = 0) -> StreamDataset:
    """Berger & Sebag's 2-D data as a stream: ``n`` evaluation points from ``seed``; every training
    batch is drawn afresh, on the device of the trainer's streams. Unconditional (``x`` has no columns)."""
    n = integer_at_least("n", n, 2)
    y, s = berger_sample(n, torch.Generator().manual_seed(int(seed)))
    truth = {"noise_sd": dict(BERGER_NOISE), "s": s}  # the evaluation points' positions on the curve

    def sampler(m: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        fresh, _ = berger_sample(m, generator)
        return torch.zeros(m, 0, device=fresh.device), fresh

    return StreamDataset("berger-manifold", torch.zeros(n, 0), y, truth=truth,
                         params={"n": n, "seed": int(seed)}, sampler=sampler, any_device=True)


def berger_log_density(y: torch.Tensor, resolution: float = 8.0, chunk: int = 512) -> torch.Tensor:
    r"""log p(y) of the artificial data's own density, by the trapezoid rule over s (float64).

    :math:`p(y) = \frac14\int_{-2}^{2} N(y; c(s), \nu(s)^2 I_2)\,ds`, each noise region integrated on
    its own grid (ν jumps at the region borders) with step :math:`\nu/(\pi\cdot\text{resolution})`:
    ``resolution`` grid points per noise standard deviation along the curve, whose speed
    :math:`\|c'(s)\|` is at most :math:`\sqrt{1+\pi^2}`. The default agrees with a 4× finer grid to
    about 2e-5 nats on average. Returns ``(n,)``.
    """
    y = torch.as_tensor(y, dtype=torch.float64)
    if y.dim() != 2 or y.shape[1] != 2:
        raise ConfigError(f"y must be an (n, 2) matrix, got shape {tuple(y.shape)}")
    if not (math.isfinite(float(resolution)) and float(resolution) >= 1):
        raise ConfigError(f"resolution must be >= 1, got {resolution}")
    edges = (S_RANGE[0], *_BREAKS, S_RANGE[1])
    nus = (BERGER_NOISE["moderate"], BERGER_NOISE["small"], BERGER_NOISE["large"])
    grids = []
    for (a, b), nu in zip(zip(edges[:-1], edges[1:]), nus):
        per = max(int(math.ceil((b - a) * math.pi * float(resolution) / nu)) + 1, 3)
        s = torch.linspace(a, b, per, dtype=torch.float64)
        w = torch.full_like(s, (b - a) / (per - 1))
        w[0] = w[-1] = 0.5 * (b - a) / (per - 1)
        grids.append((berger_curve(s), torch.log(w) - math.log(2 * math.pi * nu**2), nu))
    out = []
    for start in range(0, y.shape[0], int(chunk)):
        yc = y[start:start + int(chunk)]
        y2 = (yc * yc).sum(-1, keepdim=True)
        parts = [-(y2 - 2 * yc @ c.T + (c * c).sum(-1)[None]).clamp_min(0) / (2 * nu**2) + logw[None]
                 for c, logw, nu in grids]
        out.append(torch.logsumexp(torch.cat(parts, dim=1), dim=1) - math.log(S_RANGE[1] - S_RANGE[0]))
    return torch.cat(out)


def sphere_sample(n: int, D: int, R: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points uniform on the sphere :math:`S_{D-1}(R)` of :math:`\\mathbb R^D` (no noise)."""
    g = torch.randn(integer_at_least("n", n), int(D), generator=generator)
    return float(R) * g / g.norm(dim=1, keepdim=True)


def sphere(n: int = 2000, D: int = 3, R: float = 1.0, seed: int = 0) -> StreamDataset:
    """Points on :math:`S_{D-1}(R)` as a stream (fresh every batch): the data of Theorem 1."""
    n = integer_at_least("n", n, 2)
    D = integer_at_least("D", D, 2)
    if not (math.isfinite(float(R)) and float(R) > 0):
        raise ConfigError(f"R must be finite and > 0, got {R!r}")
    y = sphere_sample(n, D, R, torch.Generator().manual_seed(int(seed)))

    def sampler(m: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(m, 0), sphere_sample(m, D, R, generator)

    return StreamDataset("sphere", torch.zeros(n, 0), y, truth={"radius": float(R), "dim": D},
                         params={"n": n, "D": D, "R": float(R), "seed": int(seed)}, sampler=sampler)
