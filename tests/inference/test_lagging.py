"""Lagging Inference Networks: encoder-only then decoder-only steps, the inner stopping rule,
the end of aggressive mode, and exact resume."""

import math

import pyro
import pytest
import torch

from pyrovae.data import two_moon
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference import Trainer, TrainSettings
from pyrovae.inference.algorithms import BlockStats
from pyrovae.inference.lagging import LaggingInference, encoder_phase
from pyrovae.models import LearnedNoise, SigmaCVAE


def _trainer(tmp_path=None, seed=0, max_steps=20, **kw):
    pyro.set_rng_seed(seed)
    data = two_moon(200, 0.1, seed=1)
    model = SigmaCVAE(1, 2, noise=LearnedNoise(1.0))
    alg = LaggingInference(**kw)
    settings = TrainSettings(K=5, max_steps=max_steps, batch_size=50, checkpoint_every=1)
    return Trainer(model, data, alg, settings, run_dir=tmp_path), alg


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_encoder_phase_moves_only_the_encoder_and_decoder_step_only_the_decoder():
    trainer, alg = _trainer()
    model = trainer.model
    enc, dec, noise = _snapshot(model.encoder), _snapshot(model.decoder), _snapshot(model.noise)
    x, y = trainer.batch()
    alg._encoder_phase(trainer, x, y, 1.0, torch.tensor([True]))
    model = trainer.model  # synced with the trainer's weights
    assert _changed(enc, model.encoder)
    assert not _changed(dec, model.decoder) and not _changed(noise, model.noise)
    enc = _snapshot(model.encoder)
    trainer.step(x, y, 1.0, optimizer=alg.decoder_optim)
    model = trainer.model
    assert not _changed(enc, model.encoder)
    assert _changed(dec, model.decoder) and _changed(noise, model.noise)


def _scripted(*sequences):
    """A ``step(k, running)`` that returns the k-th loss of each replicate's script and records the masks."""
    calls = []

    def step(k, running):
        calls.append((k, list(running)))
        return torch.tensor([seq[k] if k < len(seq) else math.nan for seq in sequences])

    return step, calls


def test_inner_loop_stops_when_the_window_average_stops_falling():
    step, calls = _scripted([5.0, 4.0, 3.0, 2.0, 2.5, 1.9, 9.0, 9.0])  # windows: 4.5, 2.5, 2.2, 9.0 -> stop
    assert encoder_phase(step, [True], max_inner=100, window=2) == [8]
    assert [k for k, _ in calls] == list(range(8))
    step, _ = _scripted([1.0] * 20)
    assert encoder_phase(step, [True], max_inner=7, window=10) == [7]  # the cap, before a window is complete
    step, _ = _scripted([5.0, 4.0, 3.0, 2.0, 2.5, 1.0, 0.5, 0.1])
    assert encoder_phase(step, [True], max_inner=8, window=1) == [5]  # 5 > 4 > 3 > 2, then 2.5 >= 2


def test_each_replicate_of_a_batch_runs_its_own_inner_loop():
    """Replicate 0 stops after 4 steps, replicate 1 (threshold 0) after 8, replicate 2 is not aggressive and
    never steps, replicate 3 stops at its non-finite loss; each step is asked only of those still running."""
    step, calls = _scripted([3.0, 2.0, 3.0, 2.0, 0.0, 0.0],  # windows 2.5, 2.5: stops after 4
                            [5.0, 4.0, 3.0, 2.0, 2.5, 1.9, 9.0, 9.0],
                            [],
                            [4.0, math.nan, 1.0])
    assert encoder_phase(step, [True, True, False, True], max_inner=100, window=2) == [4, 8, 0, 2]
    assert calls == [(0, [True, True, False, True]), (1, [True, True, False, True]), (2, [True, True, False, False]),
                     (3, [True, True, False, False])] + [(k, [False, True, False, False]) for k in range(4, 8)]
    step, calls = _scripted([])
    assert encoder_phase(step, [False], max_inner=5, window=1) == [0] and calls == []


def test_threshold_t_stops_the_inner_loop_when_the_fall_is_at_most_t():
    # Yacoby, Pan & Doshi-Velez (2021) App. D: T is the threshold on the fall of the R-step window average
    scripted = [5.0, 4.0, 3.0, 2.0, 2.5, 1.9, 9.0, 9.0]  # windows: 4.5, 2.5 (falls 2.0), 2.2 (falls 0.3)
    step, _ = _scripted(scripted)
    assert encoder_phase(step, [True], max_inner=100, window=2, threshold=0.5) == [6]
    step, _ = _scripted(scripted)
    assert encoder_phase(step, [True], max_inner=100, window=2, threshold=0.29) == [8]  # 0.3 > 0.29: goes on
    with pytest.raises(ConfigError):
        LaggingInference(threshold=-0.1)


def test_aggressive_mode_ends_when_mutual_information_drops(monkeypatch):
    trainer, alg = _trainer()
    values = iter([0.1, 0.3, 0.5, 0.4])
    monkeypatch.setattr(alg, "mutual_information", lambda model, generator=None: next(values))
    stats = BlockStats(0, 1.0, 1.0, 0.1, 0.1, converged=True)
    events = [alg.after_block(trainer.model, stats) for _ in range(4)]
    assert [e.stop for e in events] == [False] * 4  # no stop while (or as) aggressive mode ends
    assert [e.event for e in events] == ["", "", "", "aggressive-off"] and not alg.aggressive
    assert alg.after_block(trainer.model, stats).stop  # then ordinary convergence


def test_patience_waits_for_several_drops(monkeypatch):
    trainer, alg = _trainer(patience=2)
    values = iter([0.5, 0.4, 0.6, 0.55, 0.5])
    monkeypatch.setattr(alg, "mutual_information", lambda model, generator=None: next(values))
    stats = BlockStats(0, 1.0, 1.0, 0.1, 0.1, converged=False)
    events = [alg.after_block(trainer.model, stats).event for _ in range(5)]
    assert events == ["", "", "", "", "aggressive-off"]


def test_mutual_information_is_that_of_the_encoder():
    trainer, alg = _trainer()
    mi = alg.mutual_information(trainer.model)
    assert 0.0 <= mi + 0.2 and mi <= math.log(200) + 0.2


def test_mutual_information_does_not_depend_on_the_global_generator():
    """The aggressive-mode decision reads I(x; z) after each block: drawn from torch's global generator
    (which a checkpoint does not hold), a resumed run could decide otherwise than the uninterrupted one."""
    trainer, alg = _trainer()
    values = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        values.append(alg.mutual_information(trainer.model))
    assert values[0] == values[1]


def test_resume_equals_uninterrupted(tmp_path):
    full, _ = _trainer(tmp_path / "a", seed=3, max_steps=30)
    full.run()
    half, _ = _trainer(tmp_path / "b", seed=3, max_steps=15)
    half.run()
    resumed, alg = _trainer(tmp_path / "b", seed=99, max_steps=30)
    result = resumed.run()
    assert result.metrics["resumed"]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert alg.inner_steps == full.algorithms[0].inner_steps


def test_bad_settings():
    with pytest.raises(Exception, match="Lagging"):
        LaggingInference(window=0)


# -- a batch of replicates ----------------------------------------------------------------------
SEEDS = [3, 4, 5, 6]


def _models(seeds):
    models = []
    for s in seeds:
        pyro.set_rng_seed(s)
        models.append(SigmaCVAE(1, 2, noise=LearnedNoise(1.0)))
    return models


def _batch_run(seeds, max_steps=80, run_dir=None):
    data = two_moon(200, 0.1, seed=1)
    settings = TrainSettings(K=5, max_steps=max_steps, batch_size=50, tol=0.02, checkpoint_every=2)
    trainer = Trainer(_models(seeds), data, LaggingInference(max_inner=20, window=3), settings, seeds=seeds,
                      run_dir=run_dir)
    return trainer, trainer.run()


def _aggressive_off(result):
    return list(result.history["event"]).index("aggressive-off")


def test_a_replicate_of_a_batch_equals_its_run_alone():
    """Seeds 3-6 leave aggressive mode after blocks 2, 1, 3, 1 and stop after 4, 10, 5, 8 blocks, with 131, 69,
    170 and 90 encoder-only steps: the batch mixes aggressive and joint replicates and narrows as they stop, and
    each replicate still follows its own run step for step."""
    trainer, batch = _batch_run(SEEDS)
    assert [_aggressive_off(r) for r in batch] == [2, 1, 3, 1]
    assert [len(r.history) for r in batch] == [4, 10, 5, 8]
    for seed, result, alg in zip(SEEDS, batch, trainer.algorithms):
        alone_trainer, (alone,) = _batch_run([seed])
        assert result.status == alone.status == "converged"
        assert alg.inner_steps == alone_trainer.algorithms[0].inner_steps
        assert list(result.history["event"]) == list(alone.history["event"])
        columns = ["step", "loss", "kl", "sigma"]
        torch.testing.assert_close(torch.tensor(result.history[columns].to_numpy()),
                                   torch.tensor(alone.history[columns].to_numpy()), rtol=1e-5, atol=1e-6)
        for (name, a), b in zip(result.model.state_dict().items(), alone.model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert [a.inner_steps for a in trainer.algorithms] == [131, 69, 170, 90]


def test_a_batch_resumed_after_replicates_left_ends_as_the_uninterrupted_batch(tmp_path):
    """Stopped by a cap of 30 steps (seeds 3 and 5 have converged, 4 and 6 are still training), then resumed to
    80: the plug-in's three optimisers come back from the checkpoint with the replicates still in the batch."""
    _, whole = _batch_run(SEEDS, run_dir=tmp_path / "whole")
    _, first = _batch_run(SEEDS, max_steps=30, run_dir=tmp_path / "resumed")
    assert [r.status for r in first] == ["converged", "max_steps", "converged", "max_steps"]
    trainer, resumed = _batch_run(SEEDS, run_dir=tmp_path / "resumed")
    assert all(r.metrics["resumed"] for r in resumed)
    for a, b in zip(whole, resumed):
        assert a.status == b.status and len(a.history) == len(b.history)
        for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.equal(x, y), name


def test_a_checkpoint_of_the_one_run_version_is_refused_before_anything_loads(tmp_path):
    """Its Adams were the plug-in's own tensors; the engine now keeps them, so such a checkpoint cannot resume."""
    trainer, alg = _trainer(tmp_path)
    old = {k: v for k, v in alg.state_dict().items() if k != "optimisers"}
    with pytest.raises(DataError, match="older version"):
        trainer._check_checkpoint({"replicas": [{"algorithm": old}]})
    trainer._check_checkpoint({"replicas": [{"algorithm": alg.state_dict()}]})  # today's is accepted
