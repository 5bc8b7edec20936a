r"""WGCS: Wasserstein generative conditional sampling (Liu, Zhou, Jiao & Huang 2021), a baseline of
Liu & Wang's (2025) Table 3.

A conditional generator :math:`G(\eta, x)`, :math:`\eta \sim N(0, I_m)`, is fitted so that the joint law of
:math:`(X, G(\eta, X))` matches that of :math:`(X, Y)` in the Wasserstein-1 distance, through its dual
with a critic :math:`D(x, y)`:

.. math::
    \min_G \max_D \; \mathbb E\,D(X, Y) - \mathbb E\,D(X, G(\eta, X))
    - \lambda\, \mathbb E\big(\|\nabla_{(x, y)} D(X, \hat Y)\| - 1\big)^2,

the last term being the gradient penalty of Gulrajani et al. (2017) that keeps D near 1-Lipschitz, at
:math:`\hat Y = tY + (1-t)G(\eta, X)`, :math:`t \sim U(0, 1)`. Each generator step follows
``critic_steps`` critic steps on fresh mini-batches. The conditional mean and SD at a test input are
those of ``draws`` generated responses (Liu & Wang, App. F: 10,000 Monte Carlo draws per test input).

Architecture (Liu & Wang, App. F): G a fully connected network, D "a fully connected two-layer neural
network", η ~ N(0, 1). The widths are not given; ours are G: [50, 50] and D: [50, 50] (two hidden
layers), leaky-ReLU, λ = 10, 5 critic steps per generator step and Adam with β = (0.5, 0.9)
(Gulrajani et al.'s settings; with torch's default β = (0.9, 0.999) the fit oscillates), lr 1e-3.
x and y are standardised with the training set's mean and SD before fitting and the draws mapped back
(our choice: the paper does not say, and a GAN's step sizes assume unit-scale data).
Optimisers come from :mod:`pyrovae.optim`. The networks run in float32.

References:
    Liu, Zhou, Jiao & Huang, *Wasserstein generative learning of conditional distribution*, 2021.
    Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, *Improved training of Wasserstein GANs*, 2017.
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration* (2025), Sec. 5.2, Table 3, App. F.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from pyrovae.errors import DataError, TrainingDiverged
from pyrovae.models.nets import MLP
from pyrovae.optim import Minimiser
from pyrovae.validation import finite_matrix, integer_at_least, real

__all__ = ["WGCS"]

BETAS = (0.5, 0.9)  # Adam's (β1, β2) for both players (Gulrajani et al. 2017)
DTYPE = torch.float32


class WGCS:
    """A Wasserstein conditional generator of ``y | x`` (see the module docstring)."""

    name = "wgcs"

    def __init__(self, generator_widths: Sequence[int] = (50, 50), critic_widths: Sequence[int] = (50, 50),
                 noise_dim: int = 1, steps: int = 2000, critic_steps: int = 5, batch_size: int = 256,
                 lr: float = 1e-3, penalty: float = 10.0, seed: int = 0):
        self.generator_widths, self.critic_widths = list(generator_widths), list(critic_widths)
        self.noise_dim = integer_at_least("WGCS noise_dim", noise_dim, 1)
        self.steps = integer_at_least("WGCS steps", steps, 1)
        self.critic_steps = integer_at_least("WGCS critic_steps", critic_steps, 1)
        self.batch_size = integer_at_least("WGCS batch_size", batch_size, 1)
        self.lr = real("WGCS lr", lr, 0.0, strict=True)
        self.penalty = real("WGCS penalty", penalty, 0.0)
        self.seed = int(seed)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, condition, observed) -> "WGCS":
        """``critic_steps`` critic steps per generator step, each player an Adam :class:`~pyrovae.optim.Minimiser`.
        The first step whose loss or gradient is not finite is not applied, and the fit raises
        :class:`~pyrovae.errors.TrainingDiverged` naming its generator step."""
        condition, observed = _tensor(condition, "x"), _tensor(observed, "y")
        if condition.shape[0] != observed.shape[0]:
            raise DataError(f"x has {condition.shape[0]} rows and y {observed.shape[0]}")
        self.x_loc, self.x_scale = condition.mean(0), _scale(condition)
        self.y_loc, self.y_scale = observed.mean(0), _scale(observed)
        xs, ys = (condition - self.x_loc) / self.x_scale, (observed - self.y_loc) / self.y_scale
        p, q = condition.shape[1], observed.shape[1]
        with torch.random.fork_rng(devices=[]):  # the networks' initial weights, without moving the global stream
            torch.manual_seed(self.seed)
            self.generator = MLP(self.noise_dim + p, self.generator_widths, q, "leaky_relu").to(DTYPE)
            self.critic = MLP(p + q, self.critic_widths, 1, "leaky_relu").to(DTYPE)
        self._gen = torch.Generator().manual_seed(self.seed)
        generator_fit, critic_fit = (Minimiser.adam(net.parameters(), self.lr, betas=BETAS)
                                     for net in (self.generator, self.critic))
        n = xs.shape[0]
        self.history: list[float] = []  # the critic's estimate of W1 after each generator step
        w1 = torch.tensor(math.nan)

        def critic_loss() -> torch.Tensor:
            nonlocal w1
            xb, yb = self._batch(xs, ys, n)
            with torch.no_grad():
                fake = self._generate(xb)
            w1 = self.critic(torch.cat([xb, yb], 1)).mean() - self.critic(torch.cat([xb, fake], 1)).mean()
            return -w1 + self.penalty * self._gradient_penalty(xb, yb, fake)

        def generator_loss() -> torch.Tensor:
            xb, _ = self._batch(xs, ys, n)
            return -self.critic(torch.cat([xb, self._generate(xb)], 1)).mean()

        for step in range(self.steps):
            finite = all(bool(torch.isfinite(critic_fit.step(critic_loss))) for _ in range(self.critic_steps))
            if not (finite and torch.isfinite(generator_fit.step(generator_loss))):
                raise TrainingDiverged(f"WGCS: the loss turned non-finite at generator step {step + 1}")
            self.history.append(float(w1.detach()))
        return self

    def _batch(self, xs: torch.Tensor, ys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, n, (min(self.batch_size, n),), generator=self._gen)
        return xs[idx], ys[idx]

    def _generate(self, xs: torch.Tensor) -> torch.Tensor:
        eta = torch.randn(xs.shape[0], self.noise_dim, generator=self._gen, dtype=xs.dtype)
        return self.generator(torch.cat([eta, xs], 1))

    def _gradient_penalty(self, xb: torch.Tensor, yb: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        t = torch.rand(xb.shape[0], 1, generator=self._gen, dtype=xb.dtype)
        point = torch.cat([xb, t * yb + (1 - t) * fake], 1).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(point).sum(), point, create_graph=True)
        return ((grad.norm(dim=1) - 1) ** 2).mean()

    # -- using it -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, condition, draws: int, chunk: int = 200_000) -> torch.Tensor:
        """``(draws, m, q)`` responses generated at the ``m`` rows of ``x``, in the data's units."""
        if not hasattr(self, "generator"):
            raise DataError("WGCS: call fit before sample")
        draws = integer_at_least("draws", draws, 1)
        xs = (_tensor(condition, "x", self.x_loc.numel()) - self.x_loc) / self.x_scale
        per = max(1, chunk // draws)  # test inputs per forward pass
        out = [self._generate(xs[i:i + per].repeat(draws, 1)).reshape(draws, -1, self.y_loc.numel())
               for i in range(0, xs.shape[0], per)]
        return torch.cat(out, 1) * self.y_scale + self.y_loc

    def moments(self, condition, draws: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
        """Conditional mean and SD of the first response at each row of ``x`` from ``draws`` draws (App. F)."""
        ys = self.sample(condition, draws)[..., 0].double()
        return ys.mean(0).numpy(), ys.std(0).numpy()


def _tensor(a, name: str, columns: int | None = None) -> torch.Tensor:
    a = torch.as_tensor(a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a), dtype=DTYPE)
    if a.dim() == 1:
        a = a[:, None]
    return finite_matrix(name, a, a.shape[1] if columns is None or a.dim() != 2 else columns)


def _scale(a: torch.Tensor) -> torch.Tensor:
    sd = a.std(0) if a.shape[0] > 1 else torch.ones(a.shape[1], dtype=a.dtype)
    return torch.where(sd > 0, sd, torch.ones_like(sd))

