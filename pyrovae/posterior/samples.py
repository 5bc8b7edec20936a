r"""The one sample format every posterior method returns.

``samples`` maps a site name to a tensor ``(chain, draw, N, d)``: draws of the latents
:math:`z_n \sim p_\theta(z_n \mid x_n, y_n)` for the ``N`` chosen data points. ``stats`` holds
sampler statistics: per draw and point ``(chain, draw, N)`` for samplers with one chain per
point (the batched HMC: ``diverging``, ``acceptance_rate``, ``energy``, ``lp``, ``step_size``),
joint per draw ``(chain, draw)`` for samplers whose trajectory moves all points at once (joint
NUTS: ``diverging``, ``lp``, ``step_size``), and adaptation results ``(chain, N, ...)``
(``adapted_step_size``, ``inv_mass``). :mod:`~pyrovae.posterior.arviz_adapter` writes them in
ArviZ's layout.

References:
    Kumar et al., *ArviZ a unified library for exploratory analysis of Bayesian models in
    Python*, JOSS 2019 (the ``(chain, draw, ...)`` convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pyrovae.errors import DataError

__all__ = ["PosteriorSamples"]


@dataclass
class PosteriorSamples:
    """Draws ``samples[name]`` of shape ``(chain, draw, N, d)`` with sampler statistics.

    Attributes:
        samples: ``{"z": tensor (chain, draw, N, d)}``.
        stats: per-draw ``(chain, draw, N)`` or ``(chain, draw)`` and per-chain ``(chain, N, ...)`` statistics.
        method: ``"exact"``, ``"grid"``, ``"nuts"`` or ``"hmc"``.
        points: indices of the ``N`` points in the data set.
        info: settings and wall time, JSON-friendly.
        inference_data: the ArviZ object the sampler's library produced (NUTS: ``az.from_pyro``),
            the base :func:`~pyrovae.posterior.arviz_adapter.to_arviz` completes; ``None`` otherwise.
    """

    samples: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    method: str = ""
    points: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    inference_data: Any = None

    def __post_init__(self) -> None:
        if not self.samples:
            raise DataError("no samples")
        for name, value in self.samples.items():
            if value.dim() != 4:
                raise DataError(f"samples[{name!r}] must be (chain, draw, N, d), got shape {tuple(value.shape)}")
        if not self.points:
            self.points = list(range(self.z.shape[2]))

    @property
    def z(self) -> torch.Tensor:
        """The latent draws ``(chain, draw, N, d)`` (the first site when there is no ``"z"``)."""
        return self.samples["z"] if "z" in self.samples else next(iter(self.samples.values()))

    @property
    def num_chains(self) -> int:
        return self.z.shape[0]

    @property
    def num_draws(self) -> int:
        return self.z.shape[1]

    def divergences(self) -> torch.Tensor:
        """Number of divergent transitions per point, ``(N,)`` (zeros when not recorded; a joint
        sampler's divergences count for every point)."""
        div = self.stats.get("diverging")
        n = self.z.shape[2]
        if div is None:
            return torch.zeros(n, dtype=torch.long)
        div = div.to(torch.long)
        return (div.sum((0, 1)) if div.dim() == 3 else div.sum().expand(n)).cpu()

    def mean(self) -> torch.Tensor:
        """Posterior means ``(N, d)`` pooled over chains and draws."""
        return self.z.mean((0, 1))

    def var(self) -> torch.Tensor:
        """Posterior variances ``(N, d)`` pooled over chains and draws."""
        return self.z.flatten(0, 1).var(0)

    def cpu(self) -> "PosteriorSamples":
        return PosteriorSamples(
            {k: v.detach().cpu() for k, v in self.samples.items()},
            {k: v.detach().cpu() for k, v in self.stats.items()},
            self.method,
            list(self.points),
            dict(self.info),
            self.inference_data,
        )
