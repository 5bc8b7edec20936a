"""Berger & Sebag's artificial 2-D data, the hypersphere data, and stream data sets that the
trainer redraws every step."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyrovae.data.manifolds import (
    BERGER_NOISE, berger_curve, berger_log_density, berger_manifold, berger_noise_sd, berger_sample, sphere,
)
from pyrovae.data.registry import DATASETS, make_dataset
from pyrovae.data.stream import StreamDataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference import JointSVI, Trainer, TrainSettings
from pyrovae.models import SigmaCVAE


def test_berger_formula_regions_and_noise():
    s = torch.tensor([-1.5, 0.0, 1.5])
    torch.testing.assert_close(berger_curve(s), torch.stack([s, torch.sin(math.pi * s)], -1))
    torch.testing.assert_close(berger_noise_sd(s), torch.tensor([0.05, 0.01, 0.1]))
    y, s = berger_sample(30_000, torch.Generator().manual_seed(0))
    assert y.shape == (30_000, 2) and s.min() >= -2 and s.max() <= 2
    resid = y - berger_curve(s)
    for (lo, hi), nu in (((-2, -2 / 3), 0.05), ((-2 / 3, 2 / 3), 0.01), ((2 / 3, 2), 0.1)):
        sel = (s >= lo) & (s < hi)
        assert resid[sel].std().item() == pytest.approx(nu, rel=0.05)
    assert BERGER_NOISE == {"moderate": 0.05, "small": 0.01, "large": 0.1}


def test_berger_log_density_is_a_normalised_density():
    # E_{y ~ q}[p(y)/q(y)] = 1 for a proposal q covering the support with heavier tails: Gaussians of
    # sd 0.02 and 0.2 around 800 points of the curve (closed form, close in shape to p)
    torch.manual_seed(0)
    centres = berger_curve(torch.linspace(-2.1, 2.1, 800, dtype=torch.float64))
    taus = torch.tensor([0.02, 0.2], dtype=torch.float64)
    tau = taus[torch.randint(0, 2, (4000,))][:, None]
    yq = centres[torch.randint(0, 800, (4000,))] + tau * torch.randn(4000, 2, dtype=torch.float64)
    sq = ((yq[:, None, None, :] - centres[None, :, None]) ** 2).sum(-1)          # (n, 800, 1)
    log_k = -sq / (2 * taus**2) - torch.log(2 * math.pi * taus**2)               # (n, 800, 2)
    log_q = torch.logsumexp(log_k.reshape(len(yq), -1), 1) - math.log(1600)
    ratio = torch.exp(berger_log_density(yq) - log_q)
    se = ratio.std().item() / math.sqrt(len(ratio))
    assert ratio.mean().item() == pytest.approx(1.0, abs=4 * se)
    assert se < 0.03
    y, _ = berger_sample(500, torch.Generator().manual_seed(1))
    lp = berger_log_density(y)
    assert lp.shape == (500,) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp, berger_log_density(y, resolution=24), atol=0.02, rtol=0)
    with pytest.raises(ConfigError):
        berger_log_density(torch.zeros(3, 3))


def test_berger_dataset_is_a_stream_and_registered():
    assert "berger-manifold" in DATASETS and "sphere" in DATASETS
    d = make_dataset("berger-manifold", n=200, seed=3)
    assert isinstance(d, StreamDataset) and d.condition.shape == (200, 0) and d.observed.shape == (200, 2)
    torch.testing.assert_close(d.observed, berger_manifold(n=200, seed=3).observed)  # the evaluation sample is seeded
    x, y = d.resample(50)
    assert x.shape == (50, 0) and y.shape == (50, 2)
    assert not torch.equal(d.resample(50)[1], y)  # fresh every call
    assert isinstance(d.to("cpu"), StreamDataset)
    with pytest.raises(ConfigError):
        d.resample(0)
    with pytest.raises(ConfigError):
        make_dataset("berger-manifold", n=1)


def test_sphere_points_have_norm_R():
    d = sphere(n=100, D=5, R=2.5, seed=0)
    torch.testing.assert_close(d.observed.norm(dim=1), torch.full((100,), 2.5))
    torch.testing.assert_close(d.resample(7)[1].norm(dim=1), torch.full((7,), 2.5))
    for bad in (dict(D=1), dict(R=0.0), dict(R=float("nan"))):
        with pytest.raises(ConfigError):
            sphere(n=10, **bad)


def test_stream_needs_a_sampler_and_checks_its_shapes():
    with pytest.raises(DataError):
        StreamDataset("s", torch.zeros(4, 0), torch.zeros(4, 2))
    bad = StreamDataset("s", torch.zeros(4, 0), torch.zeros(4, 2), sampler=lambda n, g=None: (torch.zeros(n, 0), torch.zeros(n, 3)))
    with pytest.raises(DataError):
        bad.resample(5)


def test_trainer_draws_a_fresh_batch_every_step_and_is_reproducible():
    calls = []

    def sampler(n, generator=None):
        calls.append(n)
        return torch.zeros(n, 0), torch.randn(n, 2, generator=generator)

    data = StreamDataset("s", torch.zeros(30, 0), torch.randn(30, 2), sampler=sampler)

    def run(seed):
        pyro.set_rng_seed(seed)
        model = SigmaCVAE(0, 2)
        return Trainer(model, data, JointSVI(), TrainSettings(K=2, max_steps=6, tol=0.0, batch_size=8)).run()

    first = run(0)
    assert calls == [8] * 6
    calls.clear()
    second = run(0)
    assert calls == [8] * 6
    assert first.history["loss"].tolist() == second.history["loss"].tolist()
    calls.clear()
    pyro.set_rng_seed(0)
    Trainer(SigmaCVAE(0, 2), data, JointSVI(), TrainSettings(K=1, max_steps=2, tol=0.0)).run()
    assert calls == [30, 30]  # no batch size: as many fresh points as the evaluation sample


def test_stream_replicates_draw_their_own_batches_and_equal_their_single_runs():
    """Each replicate's fresh batches come from its own generator: replicate r of a batch on a stream
    equals the single run with its seed."""
    data = berger_manifold(n=40, seed=0)
    settings = TrainSettings(K=2, max_steps=8, tol=0.0, batch_size=16)

    def model(i):
        pyro.set_rng_seed(i)
        return SigmaCVAE(0, 2)

    batch = Trainer([model(0), model(1)], data, JointSVI(), settings, seeds=[5, 6]).run()
    for i, seed in enumerate((5, 6)):
        single = Trainer(model(i), data, JointSVI(), settings, seeds=[seed]).run()
        assert batch[i].history["loss"].to_numpy() == pytest.approx(single.history["loss"].to_numpy(), rel=1e-5)
    assert batch[0].history["loss"].tolist() != batch[1].history["loss"].tolist()
