"""Berger & Sebag's (2020) LV-VAE as the paper builds it: σ(z) a second output head of the decoder
(:class:`HeadNoise`), reading the decoder's last hidden features like the mean layer does (Eq. 11,
§4.1, App. B)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.api import load_run, train
from pyrovae.config import load_config
from pyrovae.errors import ConfigError
from pyrovae.inference.replicates import ReplicaStreams, ReplicatedCVAE
from pyrovae.models import HeadNoise, LearnedNoise, NetworkNoise, SigmaCVAE, make_noise
from pyrovae.models.architectures import resnet_vae
from pyrovae.runs import load_checkpoint, save_checkpoint


def _mlp_model(sigma0: float = 0.4, seed: int = 0) -> SigmaCVAE:
    pyro.set_rng_seed(seed)
    return SigmaCVAE(1, 3, latent_dim=2, decoder_widths=(5, 4), noise=HeadNoise(4, 3, sigma=sigma0))


def _resnet_model(sigma0: float = 0.4, seed: int = 0) -> SigmaCVAE:
    pyro.set_rng_seed(seed)
    return resnet_vae(0, 2, 2, width=6, blocks=2, noise=HeadNoise(6, 2, sigma=sigma0))


def _perturb_head(model: SigmaCVAE, scale: float = 0.5) -> None:
    """Move the head off its zero start, so that σ varies with z."""
    with torch.no_grad():
        model.noise.head.weight.normal_(0.0, scale)
        model.noise.head.bias.normal_(-1.0, 0.2)


@pytest.mark.parametrize("build", [_mlp_model, _resnet_model], ids=["mlp", "resnet"])
def test_sigma_is_sigma0_everywhere_at_initialisation(build):
    model = build(sigma0=0.37)
    x = torch.randn(50, model.condition_dim)
    z = 3.0 * torch.randn(4, 50, 2)  # far-apart z, leading particle dimension
    mean, sigma = model.mean_and_scale(x, z)
    assert sigma.shape == mean.shape
    torch.testing.assert_close(sigma, torch.full_like(mean, 0.37), rtol=1e-6, atol=0)
    assert model.sigma == pytest.approx(0.37, rel=1e-6)
    assert torch.equal(model.noise.head.weight, torch.zeros_like(model.noise.head.weight))
    assert float(model.noise.head.bias.detach()[0]) == pytest.approx(math.log(0.37 - model.noise.sigma_min), rel=1e-6)
    # the mean is the decoder's own output: the head changes nothing about it
    torch.testing.assert_close(mean, model.decode(x, z))


def test_the_likelihood_is_equation_11_for_a_tiny_net_with_set_weights():
    r"""One latent, one hidden layer of two tanh units, two outputs; every number set by hand:
    h = tanh(W₁z + b₁), μ = W₂h + b₂, σ = σ_min + exp(W_σ h + b_σ), and
    −log p(y | z) = Σᵢ (yᵢ − μᵢ)² / (2σᵢ²) + log σᵢ + log √(2π)  (Berger & Sebag 2020, Eq. 11)."""
    model = SigmaCVAE(0, 2, latent_dim=1, decoder_widths=(2,), noise=HeadNoise(2, 2, sigma=0.5)).double()
    w1, b1 = [[0.7], [-1.2]], [0.1, 0.3]
    w2, b2 = [[1.0, -0.5], [0.25, 2.0]], [0.2, -0.1]
    ws, bs = [[0.8, -0.3], [-1.5, 0.6]], [-0.4, 0.9]
    with torch.no_grad():
        for layer, w, b in ((model.decoder[0], w1, b1), (model.decoder[2], w2, b2), (model.noise.head, ws, bs)):
            layer.weight.copy_(torch.tensor(w, dtype=torch.float64))
            layer.bias.copy_(torch.tensor(b, dtype=torch.float64))
    zs, ys = [0.6, -1.1, 2.0], [[0.5, -0.2], [-1.0, 1.3], [0.9, 0.4]]
    want = []
    for z, y in zip(zs, ys):
        h = [math.tanh(w1[j][0] * z + b1[j]) for j in range(2)]
        total = 0.0
        for i in range(2):
            mu = w2[i][0] * h[0] + w2[i][1] * h[1] + b2[i]
            sigma = model.noise.sigma_min + math.exp(ws[i][0] * h[0] + ws[i][1] * h[1] + bs[i])
            total += (y[i] - mu) ** 2 / (2 * sigma**2) + math.log(sigma) + 0.5 * math.log(2 * math.pi)
        want.append(total)
    z = torch.tensor(zs, dtype=torch.float64)[:, None]
    y = torch.tensor(ys, dtype=torch.float64)
    x = torch.zeros(3, 0, dtype=torch.float64)
    trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(x, y)
    got = -trace.nodes["y"]["fn"].log_prob(y)  # the likelihood term of the Pyro program the ELBO scores
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("build", [_mlp_model, _resnet_model], ids=["mlp", "resnet"])
def test_a_loss_on_sigma_alone_moves_the_shared_trunk_not_the_mean_layer(build):
    model = build()
    _perturb_head(model)
    x = torch.randn(30, model.condition_dim)
    _, sigma = model.mean_and_scale(x, torch.randn(30, 2))
    sigma.log().sum().backward()
    trunk = [(n, p) for n, p in model.decoder.named_parameters() if not n.startswith(f"{len(model.decoder) - 1}.")]
    assert trunk and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trunk), [n for n, _ in trunk]
    assert all(p.grad is None for p in model.decoder[-1].parameters())  # σ does not read the mean layer
    before = {n: p.detach().clone() for n, p in trunk}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(before[n], p) for n, p in trunk)


def test_a_separate_sigma_network_leaves_the_decoder_without_gradient():
    """The contrast: NetworkNoise's σ shares no weight with the decoder."""
    pyro.set_rng_seed(0)
    model = SigmaCVAE(1, 3, latent_dim=2, decoder_widths=(5, 4), noise=NetworkNoise(3, 3, sigma=0.4, widths=(4,)))
    with torch.no_grad():
        model.noise.net[-1].weight.normal_(0.0, 0.5)
    _, sigma = model.mean_and_scale(torch.randn(30, 1), torch.randn(30, 2))
    sigma.log().sum().backward()
    assert all(p.grad is None for p in model.decoder.parameters())


@pytest.mark.parametrize("build", [_mlp_model, _resnet_model], ids=["mlp", "resnet"])
def test_the_batched_replicates_compute_each_models_mean_and_sigma(build):
    models = [build(seed=s) for s in (1, 2, 3)]
    for m in models:
        _perturb_head(m)
    stack = ReplicatedCVAE.stack(models, ReplicaStreams([1, 2, 3]))
    x = torch.randn(40, models[0].condition_dim)
    z = torch.randn(2, 3, 40, 2)  # (particles, R, n, d)
    mean, sigma = stack.mean_and_scale(x, z)
    for r, m in enumerate(models):
        want_mean, want_sigma = m.mean_and_scale(x, z[:, r])
        torch.testing.assert_close(mean[:, r], want_mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(sigma[:, r], want_sigma, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(sigma[:, r], torch.full_like(want_sigma, m.noise.sigma0))  # σ varies here


def test_a_checkpoint_gives_back_the_same_sigma_of_z(tmp_path):
    model = _resnet_model(seed=0)
    _perturb_head(model)
    save_checkpoint(tmp_path, {"model": model.state_dict()}, {})
    other = _resnet_model(seed=5)
    tensors, _ = load_checkpoint(tmp_path)
    other.load_state_dict(tensors["model"])
    x, z = torch.zeros(20, 0), torch.randn(20, 2)
    torch.testing.assert_close(other.mean_and_scale(x, z), model.mean_and_scale(x, z), rtol=0, atol=0)


def test_a_run_trained_with_the_head_reloads_to_the_same_sigma_of_z(tmp_path):
    cfg = load_config(model="vae", noise="head", algorithm="joint", dataset="two-moon", n=64, latent_dim=2,
                      encoder_widths=[8], decoder_widths=[8, 6], max_steps=30, K=10, tol=0.0, lr=0.01, seed=4)
    result = train(cfg, out=tmp_path / "run", plots=False)
    assert isinstance(result.model.noise, HeadNoise) and result.model.noise.features_dim == 6
    loaded, data, _ = load_run(tmp_path / "run")
    x, z = torch.zeros(25, 0), torch.randn(25, 2)
    mean, sigma = loaded.mean_and_scale(x, z)
    torch.testing.assert_close((mean, sigma), result.model.mean_and_scale(x, z), rtol=0, atol=0)
    assert not torch.allclose(sigma, torch.full_like(sigma, cfg.sigma0))  # training moved σ(z) off σ₀


def test_refusals():
    with pytest.raises(ConfigError, match="reads 5 hidden features; the decoder's mean layer reads 4"):
        SigmaCVAE(1, 3, decoder_widths=(5, 4), noise=HeadNoise(5, 3))
    with pytest.raises(ConfigError, match="sequence of layers ending in a linear mean layer"):
        from pyrovae.models.linear import ScalarDecoder, linear_vae

        model = linear_vae(ScalarDecoder(0.5, 1.0))
        model.noise = HeadNoise(1, 1)
        model.check_noise()
    with pytest.raises(ConfigError, match="has 6 outputs; the decoder's mean layer has 3"):
        SigmaCVAE(1, 3, decoder_widths=(5, 4), noise=HeadNoise(4, 6))
    noise = HeadNoise(4, 3)
    with pytest.raises(ConfigError, match="model.noise_input"):
        noise.scale(torch.randn(2, 3))
    with pytest.raises(ConfigError):
        HeadNoise(4, 3, sigma=0.1, sigma_min=0.2)
    with pytest.raises(ConfigError, match="features_dim"):
        make_noise("head", 0.5, observed_dim=3)
    head = make_noise("head", 0.5, observed_dim=3, features_dim=7)
    assert isinstance(head, HeadNoise) and head.features_dim == 7 and head.out_dim == 3
    assert head.learned and head.per_point and head.reads_features
    assert not LearnedNoise(1.0).reads_features


def test_the_diagnosis_summarises_a_sigma_head_by_its_geometric_mean_at_the_codes():
    """The σ-vs-threshold check reads σ(z) at z = E_q[z] of each point, through the head."""
    from types import SimpleNamespace

    from pyrovae.diagnosis.decoder_variance import check_sigma_threshold

    model = _mlp_model()
    _perturb_head(model)
    condition, loc = torch.randn(30, 1), torch.randn(30, 2)
    with torch.no_grad():
        _, sigma = model.mean_and_scale(condition, loc)
    ctx = SimpleNamespace(model=model, condition=condition, loc=loc, observed=torch.randn(30, 3), unconditional=False,
                          kind="cvae", cfg=None)
    finding = check_sigma_threshold(ctx, threshold=100.0)
    assert finding.details["sigma"] == pytest.approx(float(sigma.log().mean().exp()), rel=1e-6)
    assert finding.details["sigma"] != pytest.approx(model.noise.sigma0, rel=1e-2)  # not the start value
