r"""The generating networks of Yacoby, Pan & Doshi-Velez's unsupervised examples (Appendix G).

The paper does not sample its data from the analytic :math:`f` of App. G: it fits a network (the
same leaky-ReLU architecture as the VAE's decoder) to :math:`f` and generates
:math:`x = f_{\text{net}}(z) + \varepsilon` from that network, so that the VAE's decoder can represent
the ground truth exactly and "initialisation at the ground truth" (Sec. 4) is a true global optimum.
:func:`truth_network` fits such a network; :func:`network_mean` turns it into the mean function that
:func:`pyrovae.data.yacoby_unsupervised.yacoby_splits` accepts as ``f``, and :func:`decoder_state`
gives the state dict a VAE decoder loads to start *exactly* at the truth (for the 5-D embedding the
matrix :math:`A` is folded into the last linear layer: :math:`(hW^\top + b)A = h(W^\top A) + bA`).

The fit is full-batch Adam on ``n`` draws :math:`z \sim N(0, 1)` with a one-cycle learning-rate
schedule (max ``lr``), from a seed fixed per example, so every data version, repetition and worker
process sees the same network.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 4 and Appendix G ("we generate the data from a neural
    network fitted to f to a mean squared error below 1e-4").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pyrovae.data.yacoby_unsupervised import A_EMBED, KINDS, ground_truth
from pyrovae.errors import ConfigError
from pyrovae.models.nets import MLP
from pyrovae.inference.fit import fit_module

__all__ = ["TruthNetwork", "decoder_state", "network_mean", "truth_network"]


@dataclass(frozen=True)
class TruthNetwork:
    """A fitted generating network: its state dict (1 → 2 leaky-ReLU MLP), widths and fit MSE to :math:`f`."""

    kind: str
    state: dict
    widths: tuple[int, ...]
    mse: float

    def module(self) -> MLP:
        net = MLP(1, list(self.widths), 2, "leaky_relu")
        net.load_state_dict(self.state)
        return net.eval()


def truth_network(kind: str, widths: Sequence[int] = (50, 50, 50), steps: int = 3000, n: int = 2000,
                  lr: float = 3e-3, seed: int = 0) -> TruthNetwork:
    """Fit an MLP to the analytic ``f`` of ``kind`` on ``n`` standard-normal codes (deterministic)."""
    f, _ = ground_truth(kind)  # validates kind
    if steps < 1 or n < 2 or not lr > 0:
        raise ConfigError("truth_network needs steps >= 1, n >= 2 and lr > 0")
    ss = np.random.SeedSequence([int(seed), KINDS.index(kind), 7001])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    z = torch.randn(n, 1, generator=gen)
    fz = f(z)
    with torch.random.fork_rng():
        torch.manual_seed(int(ss.generate_state(2)[1]))
        net = MLP(1, list(widths), 2, "leaky_relu")
    fit_module(net, lambda stack: (stack(z, shared=True) - fz).pow(2).mean((-2, -1)), steps=steps, lr=lr,
               every=steps, schedule="one_cycle", seeds=[seed])  # full batch: its stream draws nothing
    with torch.no_grad():
        mse = float((net(z) - fz).pow(2).mean())
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return TruthNetwork(kind, state, tuple(int(w) for w in widths), mse)


def network_mean(truth: TruthNetwork) -> Callable[[torch.Tensor], torch.Tensor]:
    """``z`` (``(n, 1)``, any float dtype) → ``f_net(z)`` (``(n, 2)``, the dtype of ``z``)."""
    net = truth.module()

    def f(z: torch.Tensor) -> torch.Tensor:
        z = z if z.dim() == 2 else z[:, None]
        with torch.no_grad():
            return net(z.to(torch.float32)).to(z.dtype)

    f.__name__ = f"{truth.kind}_network_f"
    return f


def decoder_state(truth: TruthNetwork, embed: bool = False) -> dict:
    """The network's state dict, with :data:`A_EMBED` folded into the output layer when ``embed``."""
    state = {k: v.clone() for k, v in truth.state.items()}
    if embed:
        last = max(int(k.split(".")[0]) for k in state)
        a = A_EMBED.to(torch.float32)
        state[f"{last}.weight"] = a.T @ state[f"{last}.weight"]  # (5, 2) @ (2, h)
        state[f"{last}.bias"] = state[f"{last}.bias"] @ a
    return state
