"""M2 replicates as one batch (Yacoby, Pan & Doshi-Velez 2021, Eq. 5, App. D): the direct loss against the Pyro
program and ``M2.iwae_bound``, and replicate r of a batched training against the same run alone."""

from __future__ import annotations

import itertools
import math

import pyro
import pytest
import torch

from pyrovae.data.yacoby_m2 import continuous_semicircle, discrete_semicircle
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.m2_replicates import ReplicatedM2, m2_replicate_loss
from pyrovae.inference.m2_training import m2_step_loss, train_m2, train_m2_batch
from pyrovae.inference.replicates import ReplicaStreams
from pyrovae.models.m2 import M2

CONFIGS = [("discrete", "factorised", {}), ("discrete", "conditional", {}),
           ("relaxed", "factorised", {}), ("relaxed", "conditional", {}),
           ("relaxed", "factorised", {"relaxed_density": "concrete"}),
           ("relaxed", "factorised", {"straight_through": True}),
           ("relaxed", "conditional", {"straight_through": True, "relaxed_density": "concrete"}),
           ("continuous", "factorised", {"label_dim": 2}), ("continuous", "conditional", {"label_dim": 2})]


def _seeded_models(R: int, kind: str) -> list[M2]:
    """R small M2 models, model r's weights from torch's generator seeded r."""
    out = []
    for r in range(R):
        torch.manual_seed(r)
        out.append(M2(2, kind, widths=(8,)))
    return out


def _model(kind, guide, kw, seed=1):
    torch.manual_seed(seed)
    return M2(3, kind, num_classes=3, latent_dim=2, widths=(6, 5), z_guide=guide, **kw)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("kind,guide,kw", CONFIGS)
def test_direct_loss_equals_the_pyro_program_and_the_iwae_bound_at_the_same_draws(kind, guide, kw, objective):
    """One replicate seeded s draws what the Pyro program (ELBO; TraceEnum_ELBO for a discrete y) and
    M2.iwae_bound (IWAE) draw after torch.manual_seed(s): the same loss and the same gradient."""
    model = _model(kind, guide, kw)
    x_u, x_l = torch.randn(7, 3), torch.randn(5, 3)
    y_l = torch.randn(5, 2) if kind == "continuous" else torch.randint(3, (5,))
    torch.manual_seed(123)
    with pyro.validation_enabled(False):
        reference = m2_step_loss(model, x_u, x_l, y_l, 70, 20, objective, gamma=0.7, alpha=0.3, particles=4)
    expected = torch.autograd.grad(reference, list(model.parameters()))
    stack = ReplicatedM2.stack([model], ReplicaStreams([123]))
    loss = m2_replicate_loss(stack, x_u[None], x_l[None], y_l[None], 70, 20, objective, 0.7, 0.3, 4)
    got = torch.autograd.grad(loss.sum(), [stack.stacked("param")[name] for name, _ in model.named_parameters()])
    assert loss.shape == (1,)
    assert float(loss[0].detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g[0], e, rtol=1e-4, atol=1e-4 * float(e.abs().max()) + 1e-7)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("kind,guide,kw", CONFIGS)
def test_each_replicate_of_a_batch_is_its_own_pyro_program(kind, guide, kw, objective):
    """Four replicates with their own σ, p(y), γ and α (0 included), every size distinct (R = 4, K = 3, d = 2,
    D = 5, q = 3, S = 7, 6 unlabelled and 9 labelled points): replicate r's loss and gradient are those of
    its own model's Pyro program (ELBO) or iwae_bound (IWAE) after torch.manual_seed(seed_r)."""
    kw = {**kw, "label_dim": 3} if kind == "continuous" else kw
    R, seeds = 4, [31, 32, 33, 34]
    priors = ([0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.1, 0.8])
    models = []
    for r in range(R):
        torch.manual_seed(r)
        models.append(M2(5, kind, num_classes=3, latent_dim=2, widths=(6, 4), z_guide=guide, sigma=0.2 + 0.3 * r,
                         prior_probs=None if kind == "continuous" else priors[r], **kw))
    x_u, x_l = torch.randn(R, 6, 5), torch.randn(R, 9, 5)
    y_l = torch.randn(R, 9, 3) if kind == "continuous" else torch.randint(3, (R, 9))
    gamma, alpha = torch.tensor([1.0, 0.0, 2.5, 0.7]), torch.tensor([0.0, 1.5, 0.3, 0.0])
    stack = ReplicatedM2.stack(models, ReplicaStreams(seeds))
    losses = m2_replicate_loss(stack, x_u, x_l, y_l, 60, 30, objective, gamma, alpha, 7)
    names = [name for name, _ in models[0].named_parameters()]
    grads = torch.autograd.grad(losses.sum(), [stack.stacked("param")[name] for name in names])
    for r, model in enumerate(models):
        torch.manual_seed(seeds[r])
        with pyro.validation_enabled(False):
            reference = m2_step_loss(model, x_u[r], x_l[r], y_l[r], 60, 30, objective, float(gamma[r]), float(alpha[r]), 7)
        expected = torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)
        assert float(losses[r].detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
        for name, e, g in zip(names, expected, grads):
            e = torch.zeros_like(g[r]) if e is None else e
            torch.testing.assert_close(g[r], e, rtol=1e-4, atol=1e-4 * float(e.abs().max()) + 1e-6, msg=name)


@pytest.mark.parametrize("kind,objective,guide", [("discrete", "elbo", "factorised"), ("discrete", "iwae", "conditional"),
                                                  ("relaxed", "elbo", "factorised"), ("continuous", "iwae", "factorised")])
def test_replicate_r_of_a_batch_trains_as_the_same_run_alone(kind, objective, guide):
    """Per-replicate data (versions), seeds, γ and α: each replicate ends where its own run ends."""
    make = continuous_semicircle if kind == "continuous" else discrete_semicircle
    datas = [make(n=120, seed=v) for v in range(3)]
    gammas, alphas = [1.0, 0.5, 2.0], [0.0, 1.0, 0.3]

    def fresh():
        out = []
        for r in range(3):
            torch.manual_seed(10 + r)
            out.append(M2(2, kind, widths=(8, 8), z_guide=guide))
        return out

    batch = fresh()
    results = train_m2_batch(batch, datas, objective, epochs=3, batch_size=25, lr=1e-2, gamma=gammas, alpha=alphas,
                             particles=3, seeds=[7, 8, 9])
    for r, (model, result) in enumerate(zip(fresh(), results)):
        alone = train_m2_batch([model], datas[r], objective, epochs=3, batch_size=25, lr=1e-2, gamma=gammas[r],
                               alpha=alphas[r], particles=3, seeds=[7 + r])[0]
        assert result.status == alone.status == "done"
        assert [h["loss"] for h in result.history] == pytest.approx([h["loss"] for h in alone.history], rel=1e-4)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(batch[r].state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_a_seeded_train_m2_repeats_and_is_the_one_replicate_batch():
    data = discrete_semicircle(n=100, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = M2(2, "discrete", widths=(8,))
        runs.append((model, train_m2(model, data, "elbo", epochs=2, batch_size=20, lr=1e-2, seed=3)))
    torch.manual_seed(0)
    batched = M2(2, "discrete", widths=(8,))
    train_m2_batch([batched], data, "elbo", epochs=2, batch_size=20, lr=1e-2, seeds=[3])
    for key, value in runs[0][0].state_dict().items():
        assert torch.equal(value, runs[1][0].state_dict()[key])
        assert torch.equal(value, batched.state_dict()[key])


def test_a_diverging_replicate_keeps_its_last_finite_epoch_and_the_others_are_untouched(monkeypatch):
    """Replicate 0 of three turns non-finite in its second epoch: it ends with its weights after epoch 1, and
    replicates 1 and 2 (whose Adam moments the narrowed batch carries on) end as their runs alone."""
    import pyrovae.inference.m2_training as m2t

    data = discrete_semicircle(n=100, seed=0)  # 90 unlabelled points, batches of 30: three steps an epoch
    real, calls = m2t.m2_replicate_loss, []

    def poisoned(stack, *args, **kwargs):
        losses = real(stack, *args, **kwargs)
        calls.append(len(losses))
        if len(calls) == 5 and len(losses) == 3:  # epoch 2, second step: replicate 0's loss overflows
            losses = torch.cat([losses[:1] * math.inf, losses[1:]])
        return losses

    models = lambda: _seeded_models(3, "discrete")
    batch = models()
    monkeypatch.setattr(m2t, "m2_replicate_loss", poisoned)
    results = train_m2_batch(batch, data, "elbo", epochs=3, batch_size=30, lr=1e-2, seeds=[0, 1, 2])
    monkeypatch.setattr(m2t, "m2_replicate_loss", real)
    assert [r.status for r in results] == ["nan", "done", "done"]
    assert len(results[0].history) == 1 and calls[-1] == 2  # replicate 0 left the batch after epoch 2
    for r, model in enumerate(models()):
        train_m2_batch([model], data, "elbo", epochs=1 if r == 0 else 3, batch_size=30, lr=1e-2, seeds=[r])
        for key, value in model.state_dict().items():
            torch.testing.assert_close(batch[r].state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_encoder_only_training_leaves_every_decoder_alone():
    data = discrete_semicircle(n=100, seed=0)
    models = [M2(2, "discrete", widths=(8,)) for _ in range(2)]
    decoders = [{k: v.clone() for k, v in m.decoder.state_dict().items()} for m in models]
    encoders = [{k: v.clone() for k, v in m.z_encoder_x.state_dict().items()} for m in models]
    train_m2_batch(models, data, "iwae", epochs=1, batch_size=20, lr=1e-2, seeds=[0, 1], parameters="encoder")
    for m, dec, enc in zip(models, decoders, encoders):
        assert all(torch.equal(v, dec[k]) for k, v in m.decoder.state_dict().items())
        assert any(not torch.equal(v, enc[k]) for k, v in m.z_encoder_x.state_dict().items())
        assert all(p.requires_grad for p in m.parameters())


def test_bad_batches_are_refused():
    data = discrete_semicircle(n=100, seed=0)
    with pytest.raises(ConfigError):
        train_m2_batch([M2(2), M2(2, z_guide="conditional")], data, seeds=[0, 1])
    with pytest.raises(ConfigError):
        train_m2_batch([M2(2), M2(2)], data, seeds=[0])
    with pytest.raises(ConfigError):
        train_m2_batch([M2(2), M2(2)], [data, discrete_semicircle(n=60, seed=1)], seeds=[0, 1])
    with pytest.raises(ConfigError):
        train_m2_batch([M2(2)], data, gamma=-1.0, seeds=[0])
    with pytest.raises(ConfigError):
        train_m2_batch([M2(2), M2(2)], data, gamma=[1.0, 2.0, 3.0], seeds=[0, 1])
    with pytest.raises(ConfigError):
        train_m2_batch([], data, seeds=[])
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, gamma=[1.0, 2.0], lagging=True)


def test_uniform_draws_come_from_each_replicates_own_stream():
    stack = ReplicatedM2.stack([M2(2), M2(2)], ReplicaStreams([5, 6]))
    draws = stack.uniform(4, 3, dtype=torch.float32)
    for r, seed in enumerate((5, 6)):
        assert torch.equal(draws[r], torch.rand((4, 3), generator=torch.Generator().manual_seed(seed)))


def test_the_batch_keeps_every_architecture_setting_apart():
    for a, b in itertools.combinations([M2(2), M2(2, "relaxed"), M2(2, "relaxed", temperature=0.5),
                                        M2(2, "relaxed", straight_through=True), M2(2, activation="tanh"),
                                        M2(2).double()], 2):
        with pytest.raises(ConfigError):
            ReplicatedM2.stack([a, b], ReplicaStreams([0, 1]))


def test_a_batch_killed_after_two_epochs_resumes_from_its_checkpoint_to_the_uninterrupted_run(tmp_path, monkeypatch):
    import pyrovae.inference.m2_training as m2t

    data = discrete_semicircle(n=100, seed=0)  # 90 unlabelled points, batches of 30: three steps an epoch

    models = lambda: _seeded_models(2, "relaxed")
    whole = models()
    expected = train_m2_batch(whole, data, "iwae", epochs=4, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4])
    real, calls = m2t.m2_replicate_loss, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) > 6:  # the first step of epoch 3
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(m2t, "m2_replicate_loss", killed)
    with pytest.raises(KeyboardInterrupt):
        train_m2_batch(models(), data, "iwae", epochs=4, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4],
                       run_dir=tmp_path, checkpoint_every=1)
    monkeypatch.setattr(m2t, "m2_replicate_loss", real)
    resumed_models = models()  # fresh weights: the checkpoint must put back the trained ones
    resumed = train_m2_batch(resumed_models, data, "iwae", epochs=4, batch_size=30, lr=1e-2, particles=2,
                             seeds=[3, 4], run_dir=tmp_path, checkpoint_every=1)
    for r in range(2):
        assert [h["loss"] for h in resumed[r].history] == [h["loss"] for h in expected[r].history]
        for key, value in whole[r].state_dict().items():
            assert torch.equal(resumed_models[r].state_dict()[key], value), key
    with pytest.raises(DataError):  # another batch in the same directory: other seeds
        train_m2_batch(models(), data, "iwae", epochs=5, batch_size=30, lr=1e-2, particles=2, seeds=[3, 5],
                       run_dir=tmp_path)
    with pytest.raises(DataError):  # or the same seeds with another γ
        train_m2_batch(models(), data, "iwae", epochs=5, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4],
                       gamma=2.0, run_dir=tmp_path)
    with pytest.raises(DataError):  # or other starting models (here: another σ)
        other = models()
        for m in other:
            m.sigma.fill_(0.5)
        train_m2_batch(other, data, "iwae", epochs=5, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4],
                       run_dir=tmp_path)
    with pytest.raises(DataError):  # or fewer epochs than it holds
        train_m2_batch(models(), data, "iwae", epochs=3, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4],
                       run_dir=tmp_path)
    with pytest.raises(DataError):  # or other data
        train_m2_batch(models(), discrete_semicircle(n=100, seed=1), "iwae", epochs=5, batch_size=30, lr=1e-2,
                       particles=2, seeds=[3, 4], run_dir=tmp_path)
    more = train_m2_batch(models(), data, "iwae", epochs=5, batch_size=30, lr=1e-2, particles=2, seeds=[3, 4],
                          run_dir=tmp_path)  # a longer run of the same batch goes on from epoch 4
    assert [len(r.history) for r in more] == [5, 5] and more[0].history[:4] == resumed[0].history
