"""Yacoby, Pan & Doshi-Velez (2020) App. E's Lagging schedule: R segments, each the encoder alone and then
encoder and decoder jointly; which parameters move at which step of a tiny run."""

import pyro
import pytest
import torch

from pyrovae.data import two_moon
from pyrovae.errors import ConfigError
from pyrovae.inference import Trainer, TrainSettings
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.lagging_segments import SegmentedLagging, segment_phase
from pyrovae.models import LearnedNoise, SigmaCVAE


def test_segment_boundaries():
    # 10 steps, 2 segments of 5: round(2.5) = 2 encoder-only steps each (Python rounds half to even)
    phases = [segment_phase(s, 10, 2) for s in range(10)]
    assert phases == [(0, "encoder")] * 2 + [(0, "joint")] * 3 + [(1, "encoder")] * 2 + [(1, "joint")] * 3
    # 7 steps into 3 segments: [0, 2), [2, 4), [4, 7); a fraction of 1 is the encoder alone throughout
    assert [segment_phase(s, 7, 3)[0] for s in range(7)] == [0, 0, 1, 1, 2, 2, 2]
    assert {segment_phase(s, 7, 3, 1.0)[1] for s in range(7)} == {"encoder"}
    assert {segment_phase(s, 7, 3, 0.0)[1] for s in range(7)} == {"joint"}
    assert segment_phase(12, 10, 2)[0] == 1  # past the end: the last segment


class _Recorder(SegmentedLagging):
    """Records the replicate's weights after every block (K = 1: after every step)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.snapshots = []

    def after_block(self, model, stats):
        self.snapshots.append({part: [p.detach().clone() for p in getattr(model, part).parameters()]
                               for part in ("encoder", "decoder", "noise")})
        return super().after_block(model, stats)


def _train(alg, max_steps=8, seed=0, models=1):
    data = two_moon(100, 0.1, seed=1)
    ms = []
    for i in range(models):  # replicate i starts from seed + i, as the run alone with that seed
        pyro.set_rng_seed(seed + i)
        ms.append(SigmaCVAE(1, 2, noise=LearnedNoise(1.0)))
    start = {part: [p.detach().clone() for p in getattr(ms[0], part).parameters()] for part in ("encoder", "decoder", "noise")}
    settings = TrainSettings(K=1, max_steps=max_steps, batch_size=50, tol=1.0, checkpoint_every=10**6)
    algs = alg if isinstance(alg, list) else [alg]
    result = Trainer(ms if models > 1 else ms[0], data, algs if models > 1 else algs[0], settings,
                     seeds=list(range(seed, seed + models))).run()
    return start, result


def test_each_segment_trains_the_encoder_alone_then_everything():
    alg = _Recorder(segments=2, encoder_fraction=0.5)
    start, result = _train(alg, max_steps=8)
    # 8 steps, 2 segments of 4: steps 0-1 encoder, 2-3 joint, 4-5 encoder, 6-7 joint
    expected = ["encoder", "encoder", "joint", "joint", "encoder", "encoder", "joint", "joint"]
    previous = start
    for step, (phase, snap) in enumerate(zip(expected, alg.snapshots)):
        moved = {part: any(not torch.equal(a, b) for a, b in zip(previous[part], snap[part])) for part in snap}
        assert moved["encoder"], step
        assert moved["decoder"] == (phase == "joint") and moved["noise"] == (phase == "joint"), (step, moved)
        previous = snap
    # the schedule is the training length: tol = 1 would have stopped any other algorithm after two blocks
    assert result.status == "max_steps" and len(alg.snapshots) == 8
    # every parameter requires a gradient again once training is over
    assert all(p.requires_grad for p in result.model.parameters())


def test_a_batch_equals_each_run_alone():
    _, batch = _train([SegmentedLagging(2), SegmentedLagging(2)], max_steps=6, seed=3, models=2)
    _, alone = _train(SegmentedLagging(2), max_steps=6, seed=4)
    for a, b in zip(batch[1].model.state_dict().values(), alone.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_schedules_are_refused():
    with pytest.raises(ConfigError, match="segments"):
        SegmentedLagging(0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        SegmentedLagging(2, encoder_fraction=1.5)
    with pytest.raises(ConfigError, match="at least as many steps"):
        _train(SegmentedLagging(10), max_steps=5)
    with pytest.raises(ConfigError, match="share the Lagging schedule"):
        _train([SegmentedLagging(2), SegmentedLagging(3)], max_steps=6, models=2)
    assert make_algorithm("lagging-segments").name == "lagging-segments"


def test_resume_is_exact_and_refuses_another_schedule(tmp_path):
    """A run stopped half-way (checkpoint after every block) and resumed ends where the uninterrupted run ends;
    a resume under another max_steps (which would move the segment boundaries) is refused."""
    data = two_moon(100, 0.1, seed=1)

    def trainer(run_dir, max_steps, stop_after=None):
        pyro.set_rng_seed(0)
        model = SigmaCVAE(1, 2, noise=LearnedNoise(1.0))
        settings = TrainSettings(K=2, max_steps=max_steps, batch_size=50, tol=1.0, checkpoint_every=1)
        t = Trainer(model, data, SegmentedLagging(2), settings, run_dir=run_dir, seeds=[0])
        if stop_after is not None:  # interrupt: the run's blocks end after ``stop_after`` steps
            real = t._block

            def block(start):
                if t.state.step >= stop_after:
                    raise KeyboardInterrupt
                real(start)

            t._block = block
        return t

    whole = trainer(tmp_path / "whole", 8).run()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "cut", 8, stop_after=4).run()
    resumed = trainer(tmp_path / "cut", 8).run()
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "other", 8, stop_after=4).run()
    with pytest.raises(ConfigError, match="same schedule and max_steps"):
        trainer(tmp_path / "other", 12).run()
