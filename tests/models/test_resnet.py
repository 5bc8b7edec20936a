"""Residual MLPs (Berger & Sebag's 4 blocks of 200 units) and the σ-VAE built on them."""

import pyro
import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.models import NetworkNoise
from pyrovae.models.architectures import resnet_vae
from pyrovae.models.nets import ResGaussianEncoder, ResidualBlock, ResMLP


def test_residual_block_is_identity_plus_a_branch():
    block = ResidualBlock(5)
    with torch.no_grad():
        block.net[-1].weight.zero_()
        block.net[-1].bias.zero_()
    h = torch.randn(3, 5)
    torch.testing.assert_close(block(h), h)


def test_resmlp_layout_and_shapes():
    net = ResMLP(3, 200, 4, 2)
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert len(blocks) == 4
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(3, 200)] + [(200, 200)] * 8 + [(200, 2)]
    assert net(torch.randn(7, 3)).shape == (7, 2) and net(torch.randn(4, 7, 3)).shape == (4, 7, 2)
    enc = ResGaussianEncoder(2, 16, 2, 3)
    loc, scale = enc(torch.randn(5, 2))
    assert loc.shape == scale.shape == (5, 3) and bool((scale > 0).all())
    for bad in (dict(width=0), dict(blocks=0), dict(blocks=1.5)):
        kw = dict(width=8, blocks=2) | bad
        with pytest.raises(ConfigError):
            ResMLP(3, kw["width"], kw["blocks"], 2)


def test_resnet_vae_trains_and_reloads():
    pyro.set_rng_seed(0)
    model = resnet_vae(0, 2, latent_dim=2, width=16, blocks=2, noise=NetworkNoise(2, 2, 1.0, widths=(8,)))
    assert isinstance(model.decoder, ResMLP) and isinstance(model.encoder, ResGaussianEncoder)
    x, y = torch.zeros(10, 0), torch.randn(10, 2)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("noise.net.0"))
    other = resnet_vae(0, 2, latent_dim=2, width=16, blocks=2, noise=NetworkNoise(2, 2, 1.0, widths=(8,)))
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.decode(x, torch.ones(10, 2)), model.decode(x, torch.ones(10, 2)))
