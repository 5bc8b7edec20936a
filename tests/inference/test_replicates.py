"""Replicates as a batch dimension: the batched program's mathematics, and the contract that
replicate r of a batched run equals the single run with the same seed and settings."""

from __future__ import annotations

import math
import os

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.data import Dataset, two_moon
from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import CalibratedSigma, PlainSVI
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.objectives import make_elbo
from pyrovae.inference.replicates import ReplicaStreams, ReplicatedCVAE, replicate_loss
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models import SigmaCVAE, make_noise

N = 120
SEEDS = [11, 22, 33]
# The identity contract, the agreement with Pyro's ELBO and the stacked networks run on this device:
# `PYROVAE_TEST_DEVICE=cuda` checks them on a GPU.
DEVICE = os.environ.get("PYROVAE_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def data():
    return two_moon(n=N, tau=0.1, seed=0)


def build(noise: str = "learned", seed: int = 0, sigma0: float = 1.0, condition_dim: int = 1,
          device: str = "cpu") -> SigmaCVAE:
    pyro.set_rng_seed(seed)
    # the default decoder (Liu & Wang's App. F widths) ends in a hidden layer of 4: a σ head reads it
    kwargs = {"observed_dim": 2, "in_dim": condition_dim + 2, "features_dim": 4} if noise in (
        "learned-vector", "head", "network") else {}
    return SigmaCVAE(condition_dim, 2, noise=make_noise(noise, sigma0, **kwargs)).to(device)


# -- the streams and the batched program ---------------------------------------------------
def test_stream_slices_are_the_replicates_own_draws():
    streams = ReplicaStreams(SEEDS)
    draws = streams.normal((4, 3, 5, 2), dim=-3, dtype=torch.float32)
    for r, seed in enumerate(SEEDS):
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(draws[:, r], torch.randn((4, 5, 2), generator=g))
    assert streams.select([2]).generators[0] is streams.generators[2]


def test_replicate_loss_is_the_hand_computed_negative_elbo(data):
    """Trace: -[log N(z;0,I) + log N(y; mu(x,z), sigma^2) - log N(z; loc, scale)] with z = loc + scale eps,
    eps from the replicate's own generator, summed over points; each replicate's own number."""
    models = [build("learned", seed=s, sigma0=0.5 + s / 100) for s in SEEDS]
    stack = ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS))
    beta = torch.tensor([1.0, 0.3, 0.0])
    losses = replicate_loss(stack, data.condition, data.observed, beta)
    for r, (model, seed) in enumerate(zip(models, SEEDS)):
        eps = torch.randn((N, 2), generator=torch.Generator().manual_seed(seed))
        loc, scale = model.encode(data.condition, data.observed)
        z = loc + scale * eps
        log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
        log_lik = dist.Normal(model.decode(data.condition, z), model.sigma).log_prob(data.observed).sum(-1)
        expected = -(log_lik + float(beta[r]) * (log_prior - log_q)).sum()
        assert float(losses[r].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


@pytest.mark.parametrize("particles", [1, 4])
@pytest.mark.parametrize("estimator", ["trace", "meanfield"])
def test_replicate_loss_sums_to_pyros_elbo_on_the_batched_program(data, estimator, particles):
    """Pyro's own Trace_ELBO / TraceMeanField_ELBO on the batched program (same draws, same β per
    replicate, β = 0 masked; vectorised particles at dim -3) gives the sum of the direct loss, and
    the same gradient."""
    data = data.to(DEVICE)
    models = [build("learned", seed=s, sigma0=0.5 + s / 100, device=DEVICE) for s in SEEDS]
    beta = torch.tensor([1.0, 0.3, 0.0], device=DEVICE)
    ours_stack = ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS, DEVICE))
    ours = replicate_loss(ours_stack, data.condition, data.observed, beta, estimator, particles).sum()
    stack = ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS, DEVICE))
    kind = pyro.infer.TraceMeanField_ELBO if estimator == "meanfield" else pyro.infer.Trace_ELBO
    elbo = kind(max_plate_nesting=2, num_particles=particles, vectorize_particles=particles > 1)
    pyros = elbo.differentiable_loss(stack.model, stack.guide, data.condition, data.observed, beta)
    assert float(ours.detach()) == pytest.approx(float(pyros.detach()), rel=1e-5)
    ours.backward()
    pyros.backward()
    for (name, a), b in zip(ours_stack.named_parameters(), stack.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-4 * float(b.grad.abs().max())), name


def test_iwae_with_one_particle_is_the_elbo_and_with_more_is_a_tighter_bound(data):
    models = [build("learned", seed=s) for s in SEEDS]
    elbo1 = replicate_loss(ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS)), data.condition, data.observed, None, "trace")
    iwae1 = replicate_loss(ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS)), data.condition, data.observed, None, "iwae")
    assert torch.allclose(elbo1, iwae1)
    # with S particles, per point -log mean_s w_s <= -mean_s log w_s (Jensen), same draws
    trace = replicate_loss(ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS)), data.condition, data.observed, None, "trace", 8)
    iwae = replicate_loss(ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS)), data.condition, data.observed, None, "iwae", 8)
    assert (iwae < trace).all()


@pytest.mark.parametrize("noise", ["learned", "learned-vector", "network", "head"])
def test_the_stacked_networks_give_what_vmap_gives(data, noise):
    """Encoder and decoder as batched products per layer (models.stacked_nets), σ through the
    observation model: the numbers of every module called under vmap (a σ head reads the decoder's
    features, so its decoder stays under vmap)."""
    data = data.to(DEVICE)
    models = [build(noise, seed=s, device=DEVICE) for s in SEEDS]
    stack = ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS, DEVICE))
    assert (stack._decoder is None) == (noise == "head") and stack._encoder is not None
    loc, scale = stack.encode(data.condition, data.observed)
    inputs = torch.cat([data.condition.expand(3, N, -1), data.observed.expand(3, N, -1)], dim=-1)
    own_loc, own_scale = stack._call("encoder", inputs, batched=[True])
    assert torch.allclose(loc, own_loc, atol=1e-6) and torch.allclose(scale, own_scale, atol=1e-6)
    z = torch.randn(5, 3, N, 2, generator=torch.Generator().manual_seed(4)).to(DEVICE)  # particles at dim 0
    mean, sigma = stack.mean_and_scale(data.condition, z)
    for r, model in enumerate(models):
        own_mean, own_sigma = model.mean_and_scale(data.condition, z[:, r])
        assert torch.allclose(mean[:, r], own_mean, atol=1e-5)
        assert torch.allclose(sigma[:, r].expand(own_mean.shape), own_sigma.expand(own_mean.shape), atol=1e-5)


class _ShiftedMean(SigmaCVAE):
    """A subclass that computes the decoder mean its own way."""

    def _mean_and_noise_input(self, inputs):
        mean, read = super()._mean_and_noise_input(inputs)
        return mean + 1.0, read


def test_a_subclass_with_its_own_decoding_runs_as_itself(data):
    pyro.set_rng_seed(0)
    model = _ShiftedMean(1, 2)
    stack = ReplicatedCVAE.stack([model], ReplicaStreams([0]))
    assert stack._decoder is None
    z = torch.randn(1, N, 2, generator=torch.Generator().manual_seed(5))
    mean, _ = stack.mean_and_scale(data.condition, z)
    assert torch.allclose(mean[0], model.mean_and_scale(data.condition, z[0])[0], atol=1e-6)


def test_unstacking_gives_back_each_model(data):
    models = [build("network", seed=s) for s in SEEDS]
    stack = ReplicatedCVAE.stack(models, ReplicaStreams(SEEDS))
    copy = build("network", seed=99)
    stack.write_to(1, copy)
    for (name, a), b in zip(models[1].state_dict().items(), copy.state_dict().values()):
        assert torch.equal(a, b), name


def test_replicates_must_share_one_architecture(data):
    with pytest.raises(ConfigError, match="one architecture"):
        ReplicatedCVAE.stack([build("learned"), SigmaCVAE(1, 2, decoder_widths=(3,), noise=make_noise("learned", 1.0))],
                             ReplicaStreams([1, 2]))


# -- the contract: replicate r of a batch equals the single run -------------------------------
CASES = {
    "joint-trace": dict(algorithm=lambda: make_algorithm("joint"), noise="learned"),
    "joint-meanfield": dict(algorithm=lambda: make_algorithm("joint"), noise="learned", elbo="meanfield"),
    "joint-iwae": dict(algorithm=lambda: make_algorithm("joint"), noise="learned", elbo="iwae", particles=3),
    "joint-minibatch": dict(algorithm=lambda: make_algorithm("joint"), noise="learned", batch_size=40),
    "joint-vector": dict(algorithm=lambda: make_algorithm("joint"), noise="learned-vector"),
    "joint-network": dict(algorithm=lambda: make_algorithm("joint"), noise="network"),
    "joint-head": dict(algorithm=lambda: make_algorithm("joint"), noise="head"),
    "joint-vae": dict(algorithm=lambda: make_algorithm("joint"), noise="learned", condition_dim=0),
    "analytic": dict(algorithm=lambda: make_algorithm("analytic"), noise="calibrated"),
    "calibrated-paper": dict(algorithm=lambda: CalibratedSigma(tolerance=0.5, variant="paper"), noise="calibrated"),
    "calibrated-code": dict(algorithm=lambda: CalibratedSigma(tolerance=0.5, variant="code"), noise="calibrated"),
    "monotonic": dict(algorithm=lambda: make_algorithm("monotonic", anneal_blocks=4), noise="calibrated"),
    "cyclical": dict(algorithm=lambda: make_algorithm("cyclical", anneal_blocks=6, cycles=2), noise="calibrated"),
    "fixed": dict(algorithm=lambda: make_algorithm("fixed"), noise="fixed", elbo="meanfield"),
}


def _data_for(case: dict, data: Dataset) -> Dataset:
    if case.get("x_dim", 1) == 0:
        return Dataset("moons-y", torch.zeros(N, 0), data.observed)
    return data


def _settings(case: dict) -> TrainSettings:
    return TrainSettings(K=5, max_steps=150, tol=0.02, elbo=case.get("elbo", "trace"),
                         particles=case.get("particles", 1), batch_size=case.get("batch_size"))


@pytest.mark.parametrize("name", list(CASES))
def test_replicate_equals_the_single_run_with_its_seed(data, name):
    case = CASES[name]
    d = _data_for(case, data)
    sigma0 = [1.0, 0.5, 2.0]  # a grid cell per replicate
    models = [build(case["noise"], seed=i, sigma0=s, condition_dim=case.get("x_dim", 1), device=DEVICE)
              for i, s in enumerate(sigma0)]
    batch = Trainer(models, d, case["algorithm"](), _settings(case), seeds=SEEDS).run()
    assert len(batch) == 3
    for i, (s, result) in enumerate(zip(sigma0, batch)):
        single = Trainer(build(case["noise"], seed=i, sigma0=s, condition_dim=case.get("x_dim", 1), device=DEVICE), d,
                         case["algorithm"](),
                         _settings(case), seeds=[SEEDS[i]]).run()
        assert result.status == single.status
        assert len(result.history) == len(single.history) > 1
        for column in ("loss", "sigma", "kl", "beta"):
            assert result.history[column].to_numpy() == pytest.approx(single.history[column].to_numpy(),
                                                                       rel=1e-4, abs=1e-6), column
        assert list(result.history["event"]) == list(single.history["event"])
        assert result.metrics["sigma"] == pytest.approx(single.metrics["sigma"], rel=1e-4)
        assert result.metrics["kl"] == pytest.approx(single.metrics["kl"], rel=1e-4, abs=1e-6)
    if name.startswith("calibrated"):
        assert any((r.history["event"] == "calibrate").any() for r in batch)
    if name == "joint-trace":  # the replicates stop at different blocks: a finished one leaves the batch
        assert len({len(r.history) for r in batch}) > 1


def test_per_replicate_data_and_a_diverged_replicate_leave_the_others_alone(data):
    """Replicate 1 gets data that overflow the likelihood: it stops with status nan and keeps its
    weights from before; replicates 0 and 2 finish exactly as alone."""
    bad = Dataset("bad", data.condition, data.observed * 1e30)
    datas = [data, bad, data]
    models = [build("learned", seed=i) for i in range(3)]
    settings = TrainSettings(K=5, max_steps=60, tol=0.0)
    with pyro.validation_enabled(False):
        batch = Trainer(models, datas, make_algorithm("joint"), settings, seeds=SEEDS).run()
        single = {i: Trainer(build("learned", seed=i), data, make_algorithm("joint"), settings, seeds=[SEEDS[i]]).run()
                  for i in (0, 2)}
    assert batch[1].status == "nan" and len(batch[1].history) == 0
    assert all(torch.isfinite(p).all() for p in batch[1].model.parameters())
    for i in (0, 2):
        assert batch[i].status == single[i].status == "max_steps"
        assert batch[i].metrics["sigma"] == pytest.approx(single[i].metrics["sigma"], rel=1e-4)


def test_max_steps_is_a_hard_cap_whatever_K(data):
    result = Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=30, max_steps=7, tol=0.0)).run()
    assert result.metrics["steps"] == 7 and result.status == "max_steps"


def test_resumed_batch_equals_uninterrupted(data, tmp_path):
    def trainer(max_steps, run_dir):
        models = [build("calibrated", seed=i) for i in range(3)]
        return Trainer(models, data, CalibratedSigma(tolerance=5.0), TrainSettings(K=5, max_steps=max_steps, tol=0.02,
                       checkpoint_every=1), run_dir=run_dir, seeds=SEEDS)

    full = trainer(120, tmp_path / "a").run()
    trainer(40, tmp_path / "b").run()
    resumed = trainer(120, tmp_path / "b").run()
    for a, b in zip(full, resumed):
        assert b.metrics["resumed"] and a.status == b.status
        assert a.history["sigma"].to_numpy() == pytest.approx(b.history["sigma"].to_numpy(), rel=1e-6)
        for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.allclose(x, y, rtol=1e-6, atol=1e-7), name
    assert math.isfinite(full[0].metrics["kl"])


def test_elbo_names_are_checked():
    with pytest.raises(Exception):
        make_elbo("nope")


# -- other model families through the same engine --------------------------------------------
def _family_models(family: str, seeds: list[int]):
    from pyrovae.models.architectures import resnet_vae
    from pyrovae.models.linear import CholeskyDecoder, linear_vae

    models = []
    for i in seeds:
        pyro.set_rng_seed(i)
        if family == "cholesky":  # Yacoby, Pan & Doshi-Velez (2020)'s linear model, A learned
            a = torch.tensor([[1.0, 0.2], [0.1, 0.8]], dtype=torch.float64) + 0.1 * i
            models.append(linear_vae(CholeskyDecoder(a, torch.tensor([0.003, 0.005], dtype=torch.float64), 0.1)).float())
        elif family == "resnet":  # Berger & Sebag's residual networks, small
            models.append(resnet_vae(0, 2, 2, width=8, blocks=1, noise=make_noise("fixed", 0.3)))
        else:  # their LV-VAE: σ(z) a second head on the residual decoder's last hidden layer
            models.append(resnet_vae(0, 2, 2, width=8, blocks=1, noise=make_noise("head", 1.0, observed_dim=2,
                                                                                   features_dim=8)))
    return models


@pytest.mark.parametrize("family", ["cholesky", "resnet", "resnet-head"])
def test_other_families_replicate_equals_single(data, family):
    d = Dataset("moons-y", torch.zeros(N, 0), data.observed)
    settings = TrainSettings(K=5, max_steps=40, tol=0.0)
    algorithm = "joint" if family == "resnet-head" else "fixed"
    batch = Trainer(_family_models(family, [0, 1]), d, make_algorithm(algorithm), settings, seeds=SEEDS[:2]).run()
    for i, result in enumerate(batch):
        single = Trainer(_family_models(family, [i])[0], d, make_algorithm(algorithm), settings,
                         seeds=[SEEDS[i]]).run()
        assert result.history["loss"].to_numpy() == pytest.approx(single.history["loss"].to_numpy(), rel=1e-5)
        for (name, a), b in zip(result.model.state_dict().items(), single.model.state_dict().values()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


def test_encoder_only_training_leaves_decoder_and_noise_alone(data):
    model = build("learned")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = TrainSettings(K=5, max_steps=20, tol=0.0, trainable=("encoder",))
    result = Trainer(model, data, PlainSVI(), settings).run()
    for name, value in result.model.state_dict().items():
        moved = not torch.equal(value, before[name])
        assert moved == name.startswith("encoder."), name


def test_rerunning_a_finished_batch_returns_its_results(data, tmp_path):
    """Several replicates converge in the last block (the saved stack holds them, nothing is left to
    train): a rerun into the same directory resumes with nothing to do and returns the same results."""
    def trainer():
        models = [build("learned", seed=i) for i in range(3)]
        return Trainer(models, data, make_algorithm("joint"), TrainSettings(K=5, max_steps=2000, tol=0.5),
                       run_dir=tmp_path, seeds=SEEDS)

    first = trainer().run()
    assert all(r.status == "converged" for r in first)
    assert len({len(r.history) for r in first}) == 1  # all three stop in the same block
    again = trainer().run()
    for a, b in zip(first, again):
        assert b.metrics["resumed"] and b.status == a.status and b.metrics["sigma"] == a.metrics["sigma"]


@pytest.mark.parametrize("noise", ["calibrated", "network", "learned-vector"])
@pytest.mark.parametrize("shared", [True, False])
def test_terms_in_chunks_equal_terms_in_one_pass(data, monkeypatch, noise, shared):
    """The per-block evaluation runs the networks over chunks of the points; the numbers are those of
    one pass over all of them (the draws are made at once; σ per point or one σ for all). At the
    sweeps' shapes (30 replicates × 1,000 points in chunks of 273; 50 × 5,000 in chunks of 163) they
    were equal bit for bit on this machine."""
    from pyrovae.inference import replicates

    models = []
    for r in range(3):
        pyro.set_rng_seed(r)
        models.append(SigmaCVAE(1, 2, noise=make_noise(noise, 0.5, observed_dim=2, in_dim=3, features_dim=4)))
    condition, observed = data.condition, data.observed
    if not shared:  # one data set per replicate: (R, n, ·)
        condition, observed = condition.expand(3, *condition.shape) + 0.1, observed.expand(3, *observed.shape).flip(-2)
    terms = {}
    for chunk in (None, 7):  # one pass; chunks of 7 points (120 = 17 × 7 + 1)
        stack = ReplicatedCVAE.stack(models, ReplicaStreams([11, 12, 13]))
        assert stack._widest == (64 if noise == "network" else 16)  # the σ network's hidden layer, else the encoder's
        monkeypatch.setattr(replicates, "_EVAL_NUMBERS", 2**30 if chunk is None else 3 * stack._widest * chunk)
        terms[chunk] = stack.terms(condition, observed)
    for key in ("recon", "kl", "sq_err", "log_sigma"):  # to float rounding: BLAS may round a 7-row product otherwise
        assert torch.allclose(terms[None][key], terms[7][key], rtol=1e-6, atol=1e-6), key
        assert terms[7][key].shape == terms[None][key].shape


def test_a_parameter_the_models_froze_stays_frozen(data):
    """A parameter with requires_grad off in the models is not moved by the engine, in a batch and after
    the stack is narrowed (replicate 1 diverges at once, replicate 0 trains on alone)."""
    models = [build("learned", seed=s) for s in range(2)]
    for model in models:
        model.decoder[0].bias.requires_grad_(False)
    bias, weight = models[0].decoder[0].bias.detach().clone(), models[0].decoder[0].weight.detach().clone()
    bad = Dataset("bad", data.condition, data.observed * 1e30)
    with pyro.validation_enabled(False):
        trained = Trainer(models, [data, bad], make_algorithm("joint"), TrainSettings(K=5, max_steps=20, tol=0.0),
                          seeds=SEEDS[:2]).run()
    assert trained[1].status == "nan" and trained[0].status == "max_steps"
    assert torch.equal(trained[0].model.decoder[0].bias, bias)
    assert not torch.equal(trained[0].model.decoder[0].weight, weight)
