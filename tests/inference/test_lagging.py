"""Lagging Inference Networks: encoder-only then decoder-only steps, the inner stopping rule,
the end of aggressive mode, and exact resume."""

import math

import pyro
import pytest
import torch

from pyrovae.data import two_moon
from pyrovae.errors import ConfigError
from pyrovae.inference import Trainer, TrainSettings
from pyrovae.inference.algorithms import BlockStats
from pyrovae.inference.lagging import LaggingInference
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
    alg._encoder_phase(trainer, x, y, 1.0)
    model = trainer.model  # synced with the trainer's weights
    assert _changed(enc, model.encoder)
    assert not _changed(dec, model.decoder) and not _changed(noise, model.noise)
    enc = _snapshot(model.encoder)
    trainer.step(x, y, 1.0, optimizer=alg.decoder_optim)
    model = trainer.model
    assert not _changed(enc, model.encoder)
    assert _changed(dec, model.decoder) and _changed(noise, model.noise)


def test_inner_loop_stops_when_the_window_average_stops_falling(monkeypatch):
    trainer, alg = _trainer(window=2, max_inner=100)
    scripted = iter([5.0, 4.0, 3.0, 2.0, 2.5, 1.9, 9.0, 9.0])  # windows: 4.5, 2.5, 2.2, 9.0 -> stop
    monkeypatch.setattr(trainer, "step", lambda *a, **k: next(scripted))
    alg._encoder_phase(trainer, *trainer.batch(), 1.0)
    assert alg.inner_steps == 8
    trainer2, alg2 = _trainer(window=10, max_inner=7)
    monkeypatch.setattr(trainer2, "step", lambda *a, **k: 1.0)
    alg2._encoder_phase(trainer2, *trainer2.batch(), 1.0)
    assert alg2.inner_steps == 7  # the cap


def test_threshold_t_stops_the_inner_loop_when_the_fall_is_at_most_t(monkeypatch):
    # Yacoby, Pan & Doshi-Velez (2021) App. D: T is the threshold on the fall of the R-step window average
    scripted = [5.0, 4.0, 3.0, 2.0, 2.5, 1.9, 9.0, 9.0]  # windows: 4.5, 2.5 (falls 2.0), 2.2 (falls 0.3)
    trainer, alg = _trainer(window=2, max_inner=100, threshold=0.5)
    it = iter(scripted)
    monkeypatch.setattr(trainer, "step", lambda *a, **k: next(it))
    alg._encoder_phase(trainer, *trainer.batch(), 1.0)
    assert alg.inner_steps == 6
    trainer2, alg2 = _trainer(window=2, max_inner=100, threshold=0.29)
    it2 = iter(scripted)
    monkeypatch.setattr(trainer2, "step", lambda *a, **k: next(it2))
    alg2._encoder_phase(trainer2, *trainer2.batch(), 1.0)
    assert alg2.inner_steps == 8  # 0.3 > 0.29: goes on to the 9.0 window
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
