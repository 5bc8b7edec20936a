"""Plain PyTorch networks used by the Pyro programs."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pyrovae.errors import ConfigError
from pyrovae.validation import integer_at_least

__all__ = ["ACTIVATIONS", "register_trainable", "MLP", "GaussianEncoder", "ResidualBlock", "ResMLP", "ResGaussianEncoder"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def register_trainable(name: str, module: nn.Module) -> None:
    """``pyro.module(name, module)`` when the module trains: a network frozen for the moment (the
    decoder during Lagging Inference Networks' encoder steps) is left out of Pyro's parameter
    store, where SVI would otherwise warn about each of its parameters and could not train it."""
    import pyro

    params = list(module.parameters())
    if params and all(p.requires_grad for p in params):
        pyro.module(name, module)


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


class ResidualBlock(nn.Module):
    """``h + Linear(act(Linear(act(h))))``: a pre-activation residual block of constant width."""

    def __init__(self, width: int, activation: str = "relu"):
        super().__init__()
        act = _activation(activation)
        self.net = nn.Sequential(act(), nn.Linear(width, width), act(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


def _residual_trunk(in_dim: int, width: int, blocks: int, activation: str) -> list[nn.Module]:
    width = integer_at_least("the residual width", width)
    blocks = integer_at_least("the number of residual blocks", blocks)
    return [nn.Linear(in_dim, width), *[ResidualBlock(width, activation) for _ in range(blocks)], _activation(activation)()]


class ResMLP(nn.Sequential):
    r"""A residual MLP: ``Linear(in_dim, width)``, ``blocks`` :class:`ResidualBlock`\ s, activation,
    ``Linear(width, out_dim)``. Berger & Sebag's 2-D experiments use 4 blocks of 200 units
    for both encoder and decoder (Berger & Sebag 2020, §4.1)."""

    def __init__(self, in_dim: int, width: int, blocks: int, out_dim: int, activation: str = "relu"):
        layers = _residual_trunk(in_dim, width, blocks, activation)
        super().__init__(*layers, nn.Linear(int(width), out_dim))


class ResGaussianEncoder(nn.Module):
    """Mean-field Gaussian encoder on a residual trunk (the contract of :class:`GaussianEncoder`)."""

    def __init__(self, in_dim: int, width: int, blocks: int, latent_dim: int, activation: str = "relu"):
        super().__init__()
        self.trunk = nn.Sequential(*_residual_trunk(in_dim, width, blocks, activation))
        self.loc = nn.Linear(int(width), latent_dim)
        self.log_var = nn.Linear(int(width), latent_dim)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(inputs)
        return self.loc(h), torch.exp(0.5 * self.log_var(h))
