r"""Grid posteriors for one- and two-dimensional latents, for any decoder.

On a uniform grid of cell centres :math:`z_g` with spacing :math:`h` over :math:`[-L, L]^d`,

.. math::
    \log p(y_n) \approx \log \sum_g p(y_n \mid z_g)\, N(z_g; 0, I)\; +\; d \log h,
    \qquad p(z_g \mid y_n) = p(y_n \mid z_g) N(z_g; 0, I) / p(y_n),

the midpoint rule, which for a smooth density that vanishes at the borders converges
faster than any power of :math:`h`. Means and covariances are sums over the same cells.
Two checks come with every grid: the probability in the outer 5 % band of the range
(``border_mass``; the range is too small when it is not negligible) and the change of
:math:`\log p(y_n)` when every other grid line is dropped (``resolution_error``; the grid is
too coarse for narrow modes when it is large).

This is the "exact grid posterior" that caught HMC chains stuck in a spurious mode
(see ``REFERENCE_NOTES.md``, "Measured here"); the true posterior
:math:`p_\theta(z \mid x)` is what the posterior-matching objective compares
:math:`q_\phi` with (Yacoby, Pan & Doshi-Velez 2021 Eq. 3).

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of Variational Autoencoders* (Yacoby, Pan & Doshi-Velez 2021), Eq. 3, Fig. 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget

__all__ = ["GridPosterior", "grid_posterior", "DEFAULT_RESOLUTION", "GridWarning"]

DEFAULT_RESOLUTION = {1: 2001, 2: 301}


class GridWarning(UserWarning):
    """The grid's range or resolution is not adequate for some points."""


@dataclass
class GridPosterior:
    r"""A normalised posterior on a grid, for ``N`` points at once.

    Attributes:
        axes: one tensor of cell centres per latent dimension.
        log_density: :math:`\log p(z_g \mid y_n)` per unit volume, shape ``(N, G)`` or ``(N, G, G)``.
        mean, cov: ``(N, d)`` and ``(N, d, d)``.
        log_evidence: :math:`\log p(y_n)` by quadrature, ``(N,)``.
        border_mass: posterior probability in the outer band of the range, ``(N,)``.
        resolution_error: :math:`|\log p_h(y_n) - \log p_{2h}(y_n)|`, ``(N,)``.
        flags: ``{"border": bool (N,), "resolution": bool (N,)}``.
    """

    axes: list[torch.Tensor]
    log_density: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor
    log_evidence: torch.Tensor
    border_mass: torch.Tensor
    resolution_error: torch.Tensor
    flags: dict[str, torch.Tensor]
    points: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return len(self.axes)

    @property
    def num_points(self) -> int:
        return self.log_density.shape[0]

    @property
    def spacing(self) -> list[float]:
        return [float(a[1] - a[0]) for a in self.axes]

    @property
    def var(self) -> torch.Tensor:
        return torch.diagonal(self.cov, dim1=-2, dim2=-1)

    def density(self) -> torch.Tensor:
        """Normalised density per unit volume on the grid, like :attr:`log_density`."""
        return self.log_density.exp()

    def flagged(self) -> torch.Tensor:
        """``(N,)`` bool: any check failed for that point."""
        out = torch.zeros(self.num_points, dtype=torch.bool)
        for flag in self.flags.values():
            out |= flag.cpu()
        return out

    def marginal(self, dim: int) -> torch.Tensor:
        """Marginal density ``(N, G)`` of latent dimension ``dim`` on its axis."""
        if self.latent_dim == 1:
            return self.density()
        other = 1 - dim
        return self.density().sum(dim=2 if other == 1 else 1) * self.spacing[other]

    def central_moment(self, k: int) -> torch.Tensor:
        """The ``k``-th central moment of each latent dimension's marginal, ``(N, d)``."""
        out = []
        for dim, axis in enumerate(self.axes):
            c = axis.to(torch.float64)[None, :] - self.mean[:, dim : dim + 1].to(torch.float64)
            out.append((self.marginal(dim).to(torch.float64) * c.pow(k)).sum(-1) * self.spacing[dim])
        return torch.stack(out, dim=-1)

    def sample(self, num_chains: int, num_draws: int, seed: int = 0) -> PosteriorSamples:
        """Independent draws from the piecewise-constant grid density, ``(chain, draw, N, d)``.

        A cell is drawn by its probability, then a point uniformly inside it.
        """
        probs = self.log_density.flatten(1).double().softmax(-1)  # (N, G^d)
        gen = torch.Generator(device=probs.device).manual_seed(int(seed))
        total = num_chains * num_draws
        idx = torch.multinomial(probs, total, replacement=True, generator=gen)  # (N, total)
        g = self.axes[0].shape[0]
        coords = [idx] if self.latent_dim == 1 else [idx // g, idx % g]
        z = torch.stack([self.axes[k][c] for k, c in enumerate(coords)], dim=-1)  # (N, total, d)
        h = torch.tensor(self.spacing, dtype=z.dtype, device=z.device)
        z = z + (torch.rand(z.shape, generator=gen, dtype=z.dtype, device=z.device) - 0.5) * h
        z = z.permute(1, 0, 2).reshape(num_chains, num_draws, self.num_points, self.latent_dim)
        return PosteriorSamples({"z": z}, {}, "grid", list(self.points), {"iid": True, **self.settings})

    def check(self, action: str = "warn") -> torch.Tensor:
        """Act on the flags: ``"raise"`` a :class:`~pyrovae.errors.DataError`, ``"warn"`` or ``"ignore"``.
        Returns :meth:`flagged`."""
        bad = self.flagged()
        if bad.any() and action != "ignore":
            pts = [self.points[i] for i in torch.nonzero(bad).flatten().tolist()]
            parts = []
            if self.flags["border"].any():
                parts.append(f"posterior mass up to {float(self.border_mass.max()):.1e} at the border (widen the range)")
            if self.flags["resolution"].any():
                parts.append(f"log p(y) changes by up to {float(self.resolution_error.max()):.1e} at half resolution (refine the grid)")
            msg = f"grid posterior not reliable for points {pts[:10]}{'...' if len(pts) > 10 else ''}: " + "; ".join(parts)
            if action == "raise":
                raise DataError(msg)
            import warnings

            warnings.warn(msg, GridWarning, stacklevel=2)
        return bad


def _midpoint_axis(low: float, high: float, resolution: int, dtype, device) -> torch.Tensor:
    h = (high - low) / resolution
    return low + h * (torch.arange(resolution, dtype=dtype, device=device) + 0.5)


def _normalise(log_joint: torch.Tensor, log_cell: float) -> tuple[torch.Tensor, torch.Tensor]:
    flat = log_joint.flatten(1)
    log_z = torch.logsumexp(flat, dim=-1) + log_cell
    return log_z, log_joint - log_z.view((-1,) + (1,) * (log_joint.dim() - 1))


def grid_posterior(
    target: LatentTarget,
    limit: float | tuple[float, float] = 9.0,
    resolution: int | None = None,
    chunk_size: int = 1 << 18,
    border_band: float = 0.05,
    border_tol: float = 1e-6,
    resolution_tol: float = 1e-3,
    on_flag: str = "warn",
) -> GridPosterior:
    r"""The grid posterior of every point of ``target`` (``latent_dim`` 1 or 2).

    Args:
        target: the decoder likelihood, vectorised over points.
        limit: the range: ``L`` for :math:`[-L, L]^d` (default 9, where the prior's
            density is :math:`e^{-40}` of its peak) or ``(low, high)``.
        resolution: cells per axis; default 2001 in 1-D and 301 in 2-D.
        chunk_size: at most this many ``(grid point, data point)`` pairs per decoder call.
        border_band: the fraction of the range, on each side, counted as border.
        border_tol, resolution_tol: thresholds of the two checks.
        on_flag: ``"warn"``, ``"raise"`` (:class:`~pyrovae.errors.DataError`) or ``"ignore"``.
    """
    d, n = target.latent_dim, target.num_points
    if d not in (1, 2):
        raise ConfigError(f"grid posteriors need a 1-D or 2-D latent, got latent_dim={d}; use nuts or hmc")
    if on_flag not in ("warn", "raise", "ignore"):
        raise ConfigError(f"on_flag must be 'warn', 'raise' or 'ignore', got {on_flag!r}")
    low, high = (-float(limit), float(limit)) if not isinstance(limit, Sequence) else (float(limit[0]), float(limit[1]))
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ConfigError(f"grid range must be finite with low < high, got ({low}, {high})")
    resolution = int(resolution or DEFAULT_RESOLUTION[d])
    if resolution < 8:
        raise ConfigError(f"grid resolution must be at least 8, got {resolution}")
    dtype, device = target.dtype, target.device
    axis = _midpoint_axis(low, high, resolution, dtype, device)
    h = (high - low) / resolution
    if d == 1:
        nodes = axis[:, None]
    else:
        gz0, gz1 = torch.meshgrid(axis, axis, indexing="ij")
        nodes = torch.stack([gz0.flatten(), gz1.flatten()], dim=-1)  # (G*G, 2), row-major
    per_call = max(1, chunk_size // n)
    parts = []
    with torch.no_grad():
        for start in range(0, nodes.shape[0], per_call):
            block = nodes[start : start + per_call]
            z = block[:, None, :].expand(block.shape[0], n, d)
            parts.append(target.log_joint(z).to(torch.float64))
    log_joint = torch.cat(parts).T  # (N, G^d)
    if not torch.isfinite(log_joint).any(dim=-1).all():
        raise DataError("the log-likelihood is not finite anywhere on the grid for some points")
    log_joint = torch.nan_to_num(log_joint, nan=-math.inf)
    shape = (n,) + (resolution,) * d
    log_joint = log_joint.reshape(shape)
    log_z, log_density = _normalise(log_joint, d * math.log(h))

    # moments, in float64
    a64 = axis.to(torch.float64)
    mass = (log_density + d * math.log(h)).exp()  # cell probabilities (N, G[, G])
    if d == 1:
        mean = (mass * a64).sum(-1, keepdim=True)
        c = a64 - mean
        cov = (mass * c * c).sum(-1).view(n, 1, 1)
        band = int(math.ceil(border_band * resolution))
        border = mass[:, :band].sum(-1) + mass[:, -band:].sum(-1)
        coarse = log_joint[:, ::2]
    else:
        m0, m1 = mass.sum(2), mass.sum(1)  # marginals over axis 0 and 1
        mean = torch.stack([(m0 * a64).sum(-1), (m1 * a64).sum(-1)], dim=-1)
        c0 = a64[None, :, None] - mean[:, 0, None, None]
        c1 = a64[None, None, :] - mean[:, 1, None, None]
        v00 = (mass * c0 * c0).sum((1, 2))
        v11 = (mass * c1 * c1).sum((1, 2))
        v01 = (mass * c0 * c1).sum((1, 2))
        cov = torch.stack([torch.stack([v00, v01], -1), torch.stack([v01, v11], -1)], -2)
        band = int(math.ceil(border_band * resolution))
        inner = mass[:, band:-band, band:-band].sum((1, 2))
        border = (mass.sum((1, 2)) - inner).clamp_min(0.0)
        coarse = log_joint[:, ::2, ::2]
    log_z_coarse = torch.logsumexp(coarse.flatten(1), -1) + d * math.log(2 * h)
    res_err = (log_z - log_z_coarse).abs()
    flags = {"border": (border > border_tol).cpu(), "resolution": (res_err > resolution_tol).cpu()}
    post = GridPosterior(
        axes=[axis] * d,
        log_density=log_density,
        mean=mean,
        cov=cov,
        log_evidence=log_z,
        border_mass=border,
        resolution_error=res_err,
        flags=flags,
        points=list(target.points or range(n)),
        settings={"limit": [low, high], "resolution": resolution, "spacing": h},
    )
    post.check(on_flag)
    return post
