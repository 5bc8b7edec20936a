"""Initialisation at the ground truth (Yacoby, Pan & Doshi-Velez 2021, App. D) on a tiny case."""

import pytest
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.init import fit_decoder, fit_encoder, init_at_ground_truth
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.nets import MLP
from pyrovae.models.noise import FixedNoise


def _tiny(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g)
    fz = torch.cat([z, 0.5 * z], -1)  # a line: the posterior is Gaussian
    y = fz + 0.1 * torch.randn(n, 2, generator=g)
    return Dataset("tiny", torch.zeros(n, 0), y, truth={"z": z, "fz": fz, "noise_var": 0.01})


def test_decoder_regression_reaches_the_target():
    torch.manual_seed(0)
    d = _tiny()
    net = MLP(1, [20, 20], 2, "leaky_relu")
    mse, steps = fit_decoder(net, d.truth["z"], d.truth["fz"], target_mse=1e-4, max_steps=5000, lr=1e-2)
    assert mse < 1e-4 and steps <= 5000
    with pytest.raises(ConfigError):
        fit_decoder(MLP(1, [2], 2), d.truth["z"], d.truth["fz"], target_mse=1e-9, max_steps=5, require=True)
    with pytest.raises(DataError):
        fit_decoder(net, d.truth["z"], d.truth["fz"][:5])


def test_encoder_fit_keeps_decoder_and_finds_the_posterior():
    torch.manual_seed(0)
    d = _tiny()
    model = SigmaCVAE(0, 2, 1, [20, 20], [20, 20], noise=FixedNoise(0.1), activation="leaky_relu")
    info = init_at_ground_truth(model, d, lr=1e-2, decoder_steps=5000, encoder_steps=600, seed=0)
    assert info.decoder_mse < 1e-4
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    loss = fit_encoder(model, d, steps=50, lr=1e-3, seed=1)
    assert all(torch.equal(before[k], v) for k, v in model.decoder.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    # linear-Gaussian truth: the exact posterior mean of z given y is w^T y / (w^T w + s2), w = (1, .5)
    w = torch.tensor([1.0, 0.5])
    post_mean = d.observed @ w / (w @ w + 0.01)
    loc, scale = model.encode(d.condition, d.observed)
    assert torch.allclose(loc[:, 0], post_mean, atol=0.1)
    assert torch.allclose(scale[:, 0].mean(), torch.tensor(float((0.01 / (w @ w + 0.01)) ** 0.5)), rtol=0.3)
    assert loss == pytest.approx(info.encoder_loss, abs=0.3)


def test_mismatched_model_is_refused():
    d = _tiny(20)
    with pytest.raises(ConfigError):
        init_at_ground_truth(SigmaCVAE(0, 2, 2, [4], [4]), d, decoder_steps=1, encoder_steps=1)


def test_decoder_already_at_the_target_is_left_untouched():
    d = _tiny()
    net = torch.nn.Linear(1, 2, bias=False)
    net.weight.data = torch.tensor([[1.0], [0.5]])
    before = net.weight.detach().clone()
    mse, steps = fit_decoder(net, d.truth["z"], d.truth["fz"], target_mse=1e-4)
    assert steps == 0 and mse < 1e-12 and torch.equal(before, net.weight)


def test_encoder_warm_start_regresses_the_mean_on_the_true_codes():
    from pyrovae.inference.init import regress_encoder

    torch.manual_seed(0)
    d = _tiny(400)
    model = SigmaCVAE(0, 2, 1, [20, 20], [20, 20], noise=FixedNoise(0.1), activation="leaky_relu")
    with torch.no_grad():
        start = float((model.encode(d.condition, d.observed)[0] - d.truth["z"]).pow(2).mean())
    mse = regress_encoder(model, d, d.truth["z"], steps=300, scale=0.05)
    assert mse < 0.02 < start
    with torch.no_grad():
        assert torch.allclose(model.encode(d.condition, d.observed)[1].median(), torch.tensor(0.05), rtol=0.2)
    with pytest.raises(ConfigError):
        regress_encoder(model, d, d.truth["z"], steps=1, scale=0.0)
