"""Plain PyTorch networks used by the Pyro programs."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pyrovae.errors import ConfigError

__all__ = ["ACTIVATIONS", "MLP", "GaussianEncoder"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


class MLP(nn.Sequential):
    """``in_dim -> widths[0] -> ... -> widths[-1] -> out_dim``, activation after each hidden layer."""

    def __init__(self, in_dim: int, widths: Sequence[int], out_dim: int, activation: str = "tanh"):
        if any(int(w) < 1 for w in widths):
            raise ConfigError(f"hidden widths must be positive integers, got {list(widths)}")
        act = _activation(activation)
        layers: list[nn.Module] = []
        dims = [in_dim, *[int(w) for w in widths]]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)


class GaussianEncoder(nn.Module):
    """Mean-field Gaussian encoder: a shared MLP trunk, then location and log-variance heads."""

    def __init__(self, in_dim: int, widths: Sequence[int], latent_dim: int, activation: str = "tanh"):
        super().__init__()
        if not widths:
            raise ConfigError("the encoder needs at least one hidden layer")
        act = _activation(activation)
        self.trunk = nn.Sequential(MLP(in_dim, widths[:-1], int(widths[-1]), activation), act())
        self.loc = nn.Linear(int(widths[-1]), latent_dim)
        self.log_var = nn.Linear(int(widths[-1]), latent_dim)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(inputs)
        return self.loc(h), torch.exp(0.5 * self.log_var(h))
