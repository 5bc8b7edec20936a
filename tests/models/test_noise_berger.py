"""Observation models of Berger & Sebag (2020): learned per-output σ, σ(x, z) from a network (LV-VAE),
F*-VAE's fixed σ from a finished run, and a replayed σ schedule (App. A.2)."""

from __future__ import annotations

import math

import pandas as pd
import pyro
import pytest
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.inference import JointSVI, ReplaySigma, Trainer, TrainSettings
from pyrovae.inference.algorithms import FixedSigma
from pyrovae.models import (
    FixedNoise, LearnedNoise, LearnedVectorNoise, NetworkNoise, ScheduledNoise, SigmaCVAE, fstar_noise, make_noise,
)
from pyrovae.optim import Minimiser
from pyrovae.runs import final_sigma, load_checkpoint, save_checkpoint, write_json
from pyrovae.data.base import Dataset

MEAN = torch.randn(7, 3)
INPUTS = torch.randn(7, 4)  # [x, z] with x_dim = 1, latent_dim = 3... any width the network was built for


def _noises():
    return {
        "vector": LearnedVectorNoise(0.4, 3),
        "network": NetworkNoise(4, 3, sigma=0.4, widths=(8,)),
        "scheduled": ScheduledNoise([0.4, 0.3, 0.2]),
    }


@pytest.mark.parametrize("kind", ["vector", "network", "scheduled"])
def test_shapes_positivity_and_start_value(kind):
    noise = _noises()[kind]
    s = torch.broadcast_to(noise.scale(MEAN, INPUTS), MEAN.shape)
    assert s.shape == MEAN.shape and bool((s > 0).all())
    torch.testing.assert_close(s, torch.full_like(MEAN, 0.4))  # every kind starts at sigma0 everywhere
    assert noise.sigma == pytest.approx(0.4, rel=1e-5)


def test_vector_noise_learns_one_sigma_per_output():
    noise = LearnedVectorNoise(1.0, 3)
    assert noise.learned and not noise.settable
    with torch.no_grad():
        noise.log_sigma.copy_(torch.log(torch.tensor([0.1, 1.0, 10.0])))
    torch.testing.assert_close(noise.sigmas, torch.tensor([0.1, 1.0, 10.0]))
    assert noise.sigma == pytest.approx(1.0, rel=1e-5)  # geometric mean
    noise.scale(MEAN).sum().backward()
    torch.testing.assert_close(noise.log_sigma.grad, torch.tensor([0.1, 1.0, 10.0]))  # d exp(l)/dl = exp(l)
    with pytest.raises(ConfigError):
        noise.scale(torch.randn(7, 2))
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError):
            LearnedVectorNoise(1.0, bad)


def test_network_noise_depends_on_the_input_and_gradients_reach_every_parameter():
    noise = NetworkNoise(4, 3, sigma=1.0, widths=(8, 8))
    # the zero-initialised last layer: only it gets a gradient at first; after one step, all do
    target = torch.rand(7, 3) + 0.5
    minimiser = Minimiser.adam(noise.parameters(), 0.1)
    assert minimiser.run(lambda: ((noise.scale(MEAN, INPUTS) - target) ** 2).sum(), 2).status == "done"
    minimiser.optimizer.zero_grad()
    ((noise.scale(MEAN, INPUTS) - target) ** 2).sum().backward()
    for name, p in noise.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    s = noise.scale(MEAN, INPUTS)
    assert s.shape == (7, 3) and bool((s > noise.sigma_min).all())
    assert s.std(0).sum() > 0  # varies across inputs
    with pytest.raises(ConfigError):
        noise.scale(MEAN)  # needs the decoder input
    with pytest.raises(ConfigError):
        noise.scale(MEAN, torch.randn(7, 5))
    with pytest.raises(ConfigError):
        NetworkNoise(4, 3, sigma=0.1, sigma_min=0.2)


def test_network_noise_particle_dimensions():
    noise = NetworkNoise(4, 3, sigma=0.5)
    s = noise.scale(torch.randn(5, 7, 3), torch.randn(5, 7, 4))
    assert s.shape == (5, 7, 3)


@pytest.mark.parametrize("kind", ["vector", "network"])
def test_cvae_gradients_reach_sigma_parameters(kind):
    pyro.set_rng_seed(0)
    noise = LearnedVectorNoise(0.7, 2) if kind == "vector" else NetworkNoise(1 + 2, 2, sigma=0.7, widths=(8,))
    model = SigmaCVAE(1, 2, noise=noise)
    if kind == "network":  # its last layer starts at zero (sigma = sigma0 everywhere): move it off zero
        with torch.no_grad():
            model.noise.net[-1].weight.normal_(0.0, 0.1)
    x, y = torch.randn(20, 1), torch.randn(20, 2)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model.model, model.guide, x, y)
    loss.backward()
    for name, p in model.noise.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    terms = model.terms(x, y)
    assert terms["recon"].shape == (20,) and torch.isfinite(terms["recon"]).all()
    assert model.sample(x).shape == (20, 2) and model.sample(x, 3).shape == (3, 20, 2)
    assert model.reconstruct(x, y).shape == (20, 2)


def test_cvae_likelihood_uses_per_output_sigma():
    """terms()' reconstruction equals a hand-written diagonal Gaussian with the network's σ."""
    pyro.set_rng_seed(1)
    model = SigmaCVAE(0, 2, latent_dim=2, noise=NetworkNoise(2, 2, sigma=0.5, widths=(8,))).double()
    with torch.no_grad():
        model.noise.net[-1].weight.normal_()  # make σ depend on z
    y = torch.randn(30, 2, dtype=torch.float64)
    x = torch.zeros(30, 0, dtype=torch.float64)
    torch.manual_seed(5)
    recon = model.terms(x, y)["recon"]
    torch.manual_seed(5)
    loc, scale = model.encode(x, y)
    z = loc + scale * torch.randn_like(loc)
    mean = model.decode(x, z)
    sigma = model.noise.net(z).exp() + model.noise.sigma_min
    want = (0.5 * ((y - mean) / sigma) ** 2 + sigma.log() + 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(recon, want)


@pytest.mark.parametrize("kind", ["vector", "network", "scheduled"])
def test_checkpoint_round_trip(kind, tmp_path):
    def build():
        noise = {"vector": lambda: LearnedVectorNoise(0.5, 2), "network": lambda: NetworkNoise(3, 2, 0.5, widths=(8,)),
                 "scheduled": lambda: ScheduledNoise([0.9, 0.5, 0.25])}[kind]()
        return SigmaCVAE(1, 2, noise=noise)

    pyro.set_rng_seed(0)
    model = build()
    with torch.no_grad():
        for p in model.noise.parameters():
            p.add_(0.3 * torch.randn_like(p))
    if kind == "scheduled":
        model.noise.at_block(2)
    save_checkpoint(tmp_path, {"model": model.state_dict()}, {})
    pyro.set_rng_seed(1)
    other = build()
    tensors, _ = load_checkpoint(tmp_path)  # weights_only=True
    other.load_state_dict(tensors["model"])
    inputs = torch.randn(6, 3)
    mean = torch.randn(6, 2)
    torch.testing.assert_close(other.noise.scale(mean, inputs), model.noise.scale(mean, inputs))
    assert other.sigma == pytest.approx(model.sigma)


def test_fstar_noise_from_every_kind_of_finished_run(tmp_path):
    assert fstar_noise(0.043).sigma == pytest.approx(0.043)
    assert fstar_noise(torch.tensor(0.05)).sigma == pytest.approx(0.05)
    assert fstar_noise(pd.DataFrame({"sigma": [1.0, 0.5, 0.07]})).sigma == pytest.approx(0.07)
    assert fstar_noise(LearnedNoise(0.2)).sigma == pytest.approx(0.2)
    assert fstar_noise(SigmaCVAE(0, 2, noise=LearnedNoise(0.3))).sigma == pytest.approx(0.3)

    class Result:
        metrics = {"sigma": 0.11}

    assert fstar_noise(Result()).sigma == pytest.approx(0.11)
    write_json(tmp_path / "metrics.json", {"sigma": 0.09})
    noise = fstar_noise(final_sigma(tmp_path))
    assert type(noise) is FixedNoise and noise.sigma == pytest.approx(0.09) and not noise.learned
    with pytest.raises(DataError):
        fstar_noise(pd.DataFrame({"sigma": []}))
    with pytest.raises(ConfigError):
        fstar_noise(object())
    with pytest.raises(ConfigError):
        fstar_noise(str(tmp_path))  # a path is read by pyrovae.runs.final_sigma, not by the model
    write_json(tmp_path / "metrics.json", {"sigma": None})
    with pytest.raises(DataError, match="no final 'sigma'"):
        final_sigma(tmp_path)
    with pytest.raises(ConfigError):
        fstar_noise(-1.0)


def test_scheduled_noise_steps_through_its_schedule():
    noise = ScheduledNoise.from_history(pd.DataFrame({"sigma": [0.8, 0.5]}), sigma0=1.0)
    assert noise.settable and not noise.learned and len(noise) == 3
    assert list(noise.parameters()) == []
    assert [noise.at_block(b) for b in range(5)] == pytest.approx([1.0, 0.8, 0.5, 0.5, 0.5])
    assert noise.sigma == pytest.approx(0.5)
    for bad in ([], [0.5, 0.0], [float("nan")]):
        with pytest.raises(ConfigError):
            ScheduledNoise(bad)
    with pytest.raises(ConfigError):
        noise.at_block(-1)


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return Dataset("toy", torch.zeros(n, 0), torch.randn(n, 2, generator=g))


def test_replay_reproduces_the_recorded_sigma_sequence():
    data = _data()
    settings = TrainSettings(K=3, max_steps=30, lr=0.05, tol=0.0)
    pyro.set_rng_seed(0)
    ls = Trainer(SigmaCVAE(0, 2, noise=LearnedNoise(1.0)), data, JointSVI(), settings).run()
    recorded = ls.history["sigma"].to_numpy()
    assert len(recorded) == 10 and abs(recorded[-1] - 1.0) > 1e-3  # sigma moved
    pyro.set_rng_seed(1)
    model = SigmaCVAE(0, 2, noise=ScheduledNoise.from_history(ls.history, sigma0=1.0))
    trainer = Trainer(model, data, ReplaySigma(), settings)
    per_step = []
    step = trainer.step

    def spy(*args, **kwargs):
        per_step.append(float(model.noise.value))
        return step(*args, **kwargs)

    trainer.step = spy
    replay = trainer.run()
    assert replay.history["sigma"].to_numpy() == pytest.approx(recorded, rel=1e-6)
    # during block b (K = 3 steps), sigma is the recorded run's sigma at the start of block b
    starts = [1.0] + list(recorded[:-1])
    assert per_step == pytest.approx([v for v in starts for _ in range(3)], rel=1e-6)


def test_replay_needs_a_scheduled_noise():
    with pytest.raises(ConfigError):
        Trainer(SigmaCVAE(0, 2, noise=FixedNoise(0.5)), _data(), ReplaySigma())
    with pytest.raises(ConfigError):  # a learned sigma is not an F-VAE
        Trainer(SigmaCVAE(0, 2, noise=LearnedVectorNoise(0.5, 2)), _data(), FixedSigma())


def test_make_noise_new_kinds():
    assert isinstance(make_noise("learned-vector", 0.5, observed_dim=3), LearnedVectorNoise)
    net = make_noise("network", 0.5, observed_dim=3, in_dim=2)
    assert isinstance(net, NetworkNoise) and net.in_dim == 2 and net.out_dim == 3 and not net.reads_features
    with pytest.raises(ConfigError):
        make_noise("learned-vector", 0.5)
    with pytest.raises(ConfigError):
        make_noise("network", 0.5, observed_dim=3)
