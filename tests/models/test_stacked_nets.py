"""The stacked forward of the package's plain networks against each replicate's own module."""

import pytest
import torch
from torch import nn

from pyrovae.models.nets import MLP, GaussianEncoder, ResGaussianEncoder, ResMLP
from pyrovae.models.stacked_nets import stacked_forward

R, N = 3, 7


def _stack(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    params, _ = torch.func.stack_module_state(modules)
    return params


def _replicates(make) -> list[nn.Module]:
    out = []
    for r in range(R):
        torch.manual_seed(100 + r)
        out.append(make())
    return out


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu", "softplus"])
def test_mlp_equals_each_replicates_module_with_its_gradient(activation):
    modules = _replicates(lambda: MLP(3, [5, 4], 2, activation))
    params = _stack(modules)
    inputs = torch.randn(R, N, 3, generator=torch.Generator().manual_seed(0))
    out = stacked_forward(modules[0], "")(params, inputs)
    assert out.shape == (R, N, 2)
    out.pow(2).sum().backward()
    for r, module in enumerate(modules):
        own = module(inputs[r])
        assert torch.allclose(out[r], own, rtol=1e-6, atol=1e-6)
        own.pow(2).sum().backward()
        for name, p in module.named_parameters():
            assert torch.allclose(params[name].grad[r], p.grad, rtol=1e-5, atol=1e-6), name


def test_gaussian_encoder_gives_location_and_scale_with_a_prefix():
    modules = _replicates(lambda: GaussianEncoder(3, [6, 4], 2))
    params = {"encoder." + k: v for k, v in _stack(modules).items()}
    inputs = torch.randn(R, N, 3, generator=torch.Generator().manual_seed(1))
    loc, scale = stacked_forward(modules[0], "encoder.")(params, inputs)
    for r, module in enumerate(modules):
        own_loc, own_scale = module(inputs[r])
        assert torch.allclose(loc[r], own_loc, atol=1e-6) and torch.allclose(scale[r], own_scale, atol=1e-6)


def test_a_linear_layer_without_bias():
    modules = _replicates(lambda: nn.Linear(4, 3, bias=False))
    inputs = torch.randn(R, N, 4, generator=torch.Generator().manual_seed(2))
    out = stacked_forward(modules[0])(_stack(modules), inputs)
    for r, module in enumerate(modules):
        assert torch.allclose(out[r], module(inputs[r]), atol=1e-6)


class _Doubling(nn.Sequential):
    def forward(self, inputs):
        return 2 * super().forward(inputs)


def _shared_activation(act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 4), act)


@pytest.mark.parametrize("make", [
    lambda: ResMLP(3, 8, 2, 2),
    lambda: ResGaussianEncoder(3, 8, 2, 2),
    lambda: nn.Sequential(nn.Linear(3, 4), nn.GELU()),  # an activation the package does not list
    lambda: _Doubling(nn.Linear(3, 4)),  # a Sequential with its own forward
    lambda: _shared_activation(nn.Tanh()),  # one activation object at two places
], ids=["residual", "residual-encoder", "gelu", "own-forward", "shared-activation"])
def test_other_networks_are_left_to_vmap(make):
    assert stacked_forward(make()) is None


@pytest.mark.parametrize("hook", ["forward", "full_backward"])
def test_a_module_with_a_hook_is_left_to_vmap(hook):
    """A hook runs only when its module is called, so the module must be called."""
    mlp = MLP(3, [4], 2)
    assert stacked_forward(mlp) is not None
    getattr(mlp[1], f"register_{hook}_hook")(lambda module, *args: None)
    assert stacked_forward(mlp) is None
