r"""Where the posterior samplers start, and the run lengths they accept.

Both samplers (:mod:`~pyrovae.posterior.nuts`, :mod:`~pyrovae.posterior.batched_hmc`) start
every chain from :func:`initial_latents`: the encoder's :math:`q_\phi(z \mid x, y)` (the
amortised guess the posterior is compared with, Yacoby, Pan & Doshi-Velez 2021, Eq. 3), Pyro's
``init_to_median`` rule, a prior draw or given latents.
"""

from __future__ import annotations

import torch

from pyrovae.errors import ConfigError
from pyrovae.posterior.target import LatentTarget

__all__ = ["INIT_STRATEGIES", "initial_latents", "check_counts"]

INIT_STRATEGIES = ("encoder", "median", "prior")


def initial_latents(
    target: LatentTarget,
    num_chains: int,
    init: str | torch.Tensor = "encoder",
    jitter: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Starting latents ``(chains, N, d)``.

    * ``"encoder"``: chain 0 at the encoder mean of :math:`q_\phi(z \mid x, y)`, the others at
      ``loc + jitter * scale * eps`` (a draw from :math:`q` when ``jitter = 1``);
    * ``"median"``: as Pyro's ``init_to_median``: the element-wise median of 15 prior draws;
    * ``"prior"``: one prior draw per chain;
    * a tensor ``(N, d)`` (every chain starts there) or ``(chains, N, d)``.
    """
    n, d = target.num_points, target.latent_dim
    kw = dict(dtype=target.dtype, device=target.device)
    shape = (num_chains, n, d)
    if isinstance(init, torch.Tensor):
        init = init.to(**kw)
        if init.shape == (n, d):
            return init.expand(shape).clone()
        if init.shape == shape:
            return init.clone()
        raise ConfigError(f"initial latents must be ({n}, {d}) or {shape}, got {tuple(init.shape)}")
    if init == "encoder":
        enc = target.encoder()
        if enc is None:
            raise ConfigError("init='encoder' needs a model with an encoder; use init='median' or 'prior'")
        loc, scale = (t.to(**kw) for t in enc)
        eps = torch.randn(shape, generator=generator, **kw)
        eps[0] = 0.0
        return loc + jitter * scale * eps
    if init == "median":
        draws = torch.randn((15,) + shape, generator=generator, **kw)
        return draws.median(dim=0).values
    if init == "prior":
        return torch.randn(shape, generator=generator, **kw)
    raise ConfigError(f"unknown init {init!r}; use one of {', '.join(INIT_STRATEGIES)} or a tensor")


def check_counts(num_samples: int, warmup_steps: int, num_chains: int) -> None:
    """Refuse run lengths no sampler can honour, with one line."""
    if num_samples < 1 or warmup_steps < 0 or num_chains < 1:
        raise ConfigError(f"need samples >= 1, warmup >= 0, chains >= 1; got {num_samples}, {warmup_steps}, {num_chains}")
