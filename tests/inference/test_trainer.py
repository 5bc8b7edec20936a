"""The block trainer: the analytic σ update, the history, checkpoints, exact resume, NaN handling."""

from __future__ import annotations

import copy
import math
import time

import pandas as pd
import pyro
import pytest
import torch

from pyrovae.data import Dataset, two_moon
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.algorithms import CalibratedSigma
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.replicates import ReplicatedCVAE
from pyrovae.inference.trainer import HISTORY_COLUMNS, Trainer, TrainSettings
from pyrovae.models import SigmaCVAE, make_noise
from pyrovae.runs import has_checkpoint, load_checkpoint

N = 200


@pytest.fixture(scope="module")
def data() -> Dataset:
    return two_moon(n=N, tau=0.1, seed=0)


def build(noise: str, seed: int = 0, sigma0: float = 1.0) -> SigmaCVAE:
    pyro.set_rng_seed(seed)
    return SigmaCVAE(1, 2, noise=make_noise(noise, sigma0))


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- settings and construction --------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"K": 0}, {"K": -3}, {"K": 2.5}, {"lr": 0.0}, {"lr": -0.1}, {"lr": float("nan")}, {"lr": float("inf")},
        {"max_steps": 0}, {"max_steps": 1.5}, {"tol": -1e-3}, {"tol": float("nan")}, {"batch_size": 0},
        {"batch_size": 2.5}, {"checkpoint_every": 0}, {"clip_norm": 0.0}, {"clip_norm": -1.0},
    ],
)
def test_settings_reject_impossible_values(bad):
    with pytest.raises(ConfigError):
        TrainSettings(**bad)


def test_settings_accept_and_normalise():
    s = TrainSettings(K=5.0, max_steps=10.0, batch_size=32, clip_norm=5.0)
    assert s.K == 5 and isinstance(s.K, int) and s.max_steps == 10


def test_trainer_rejects_mismatches(data):
    with pytest.raises(ConfigError):  # data has 2 response columns, model 3
        Trainer(SigmaCVAE(1, 3, noise=make_noise("learned", 1.0)), data, make_algorithm("joint"))
    with pytest.raises(ConfigError):  # analytic sigma needs a settable noise
        Trainer(build("learned"), data, make_algorithm("analytic"))
    with pytest.raises(ConfigError):  # joint SVI needs a learned sigma
        Trainer(build("calibrated"), data, make_algorithm("joint"))
    with pytest.raises(ConfigError):  # IWAE + annealing is computed wrongly by pyro
        Trainer(build("calibrated"), data, make_algorithm("monotonic"), TrainSettings(elbo="iwae", particles=2))


# -- the analytic sigma (Eq. 10) --------------------------------------------------------
def test_analytic_sigma_is_root_mean_squared_residual(data, monkeypatch):
    """After each block sigma = sqrt(mean_i ||y_i - mu(x_i, z_i)||^2 / q) with the block's z
    (drawn from the replicate's own stream)."""
    model = build("calibrated")
    calls = []
    original = ReplicatedCVAE.terms

    def recording_terms(stack, x, y):
        replay = build("calibrated", seed=99)
        stack.write_to(0, replay)
        calls.append((stack.streams.generators[0].get_state(), replay))
        return original(stack, x, y)

    monkeypatch.setattr(ReplicatedCVAE, "terms", recording_terms)
    K, blocks = 4, 3
    result = Trainer(model, data, make_algorithm("analytic"), TrainSettings(K=K, max_steps=K * blocks, tol=0.0)).run()
    h = result.history
    assert len(h) == blocks and len(calls) == blocks
    for b in range(blocks):
        state, replay = calls[b]
        generator = torch.Generator()
        generator.set_state(state)
        terms = replay.terms(data.condition, data.observed, generator=generator)
        expected = math.sqrt(float(terms["sq_err"].mean()) / data.observed_dim)
        assert h["sigma"].iloc[b] == pytest.approx(expected, rel=1e-6)
        assert h["recon"].iloc[b] == pytest.approx(float(terms["recon"].mean()), rel=1e-6)
        assert h["kl"].iloc[b] == pytest.approx(float(terms["kl"].mean()), rel=1e-6, abs=1e-9)
    assert result.model.sigma == pytest.approx(h["sigma"].iloc[-1])


def test_history_columns_and_bookkeeping(data):
    K = 3
    result = Trainer(build("calibrated"), data, make_algorithm("monotonic", anneal_blocks=4),
                     TrainSettings(K=K, max_steps=6 * K, tol=0.0)).run()
    h = result.history
    assert list(h.columns) == HISTORY_COLUMNS
    assert h["block"].tolist() == list(range(6))
    assert h["step"].tolist() == [K * (b + 1) for b in range(6)]
    assert h["beta"].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    assert h["neg_elbo"].to_numpy() == pytest.approx((h["recon"] + h["kl"]).to_numpy())
    assert (h["sigma"] > 0).all() and (h["kl"] >= 0).all() and h["time"].is_monotonic_increasing
    assert result.status == "max_steps" and result.metrics["status"] == "max_steps"
    assert result.metrics["steps"] == 6 * K and result.metrics["blocks"] == 6
    assert result.metrics["true_sigma"] == 0.1
    assert result.metrics["sigma_sq_err"] == pytest.approx((result.metrics["sigma"] - 0.1) ** 2)


def test_loss_is_mean_per_sample_and_convergence_stops(data):
    # with a huge tolerance the second block is always "converged": joint SVI stops there
    result = Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=2, max_steps=100, tol=1e9)).run()
    assert result.status == "converged" and len(result.history) == 2
    assert result.history["event"].tolist() == ["", "converged"]
    # loss is per sample: of the order of recon + kl, not n times it
    row = result.history.iloc[-1]
    assert abs(row["loss"] - row["neg_elbo"]) < 0.5 * abs(row["neg_elbo"]) + 1.0


def test_wall_time_counts_the_work_of_the_final_decision(data, monkeypatch):
    # the robust variant polishes inside its last after_block: that time belongs to the run
    from pyrovae.inference.algorithms import JointSVI

    decide = JointSVI.after_block

    def slow_stop(self, model, stats):
        decision = decide(self, model, stats)
        if decision.stop:
            time.sleep(0.3)
        return decision

    monkeypatch.setattr(JointSVI, "after_block", slow_stop)
    result = Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=2, max_steps=100, tol=1e9)).run()
    assert result.status == "converged"
    assert result.metrics["wall_time"] >= 0.3 and result.history["time"].iloc[-1] >= 0.3


def test_calibration_events_are_recorded(data):
    alg = CalibratedSigma(tolerance=1e6, variant="paper")  # every converged block calibrates
    result = Trainer(build("calibrated"), data, alg, TrainSettings(K=2, max_steps=10, tol=1e9)).run()
    h = result.history
    assert h["event"].tolist() == [""] + ["calibrate"] * 4
    assert h["phi"].iloc[1:].notna().all() and math.isnan(h["phi"].iloc[0])
    assert result.metrics["calibrations"] == 4 and alg.rule.variance == 5.0


# -- checkpoints --------------------------------------------------------------------------
def test_checkpoint_reload_gives_identical_outputs(data, tmp_path):
    result = Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=3, max_steps=9), run_dir=tmp_path).run()
    assert has_checkpoint(tmp_path)
    raw = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert {"stack", "models", "optim", "streams"} <= raw.keys()
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 9 and meta["block"] == 3
    fresh = build("learned", seed=12345)
    assert not state_equal(fresh.state_dict(), result.model.state_dict())
    fresh.load_state_dict(tensors["models"]["0"])
    assert state_equal(fresh.state_dict(), result.model.state_dict())
    z = torch.randn(N, 2)
    assert torch.equal(fresh.decode(data.condition, z), result.model.decode(data.condition, z))
    for a, b in zip(fresh.encode(data.condition, data.observed), result.model.encode(data.condition, data.observed)):
        assert torch.equal(a, b)
    assert fresh.sigma == result.model.sigma
    assert (tmp_path / "history.csv").is_file()


RESUME_CASES = {
    "joint-full-batch": dict(algorithm=lambda: make_algorithm("joint"), noise="learned",
                               settings=dict(K=4, tol=0.0)),
    "calibrated-minibatch": dict(algorithm=lambda: CalibratedSigma(tolerance=1e6, variant="paper"), noise="calibrated",
                                 settings=dict(K=4, tol=1e9, batch_size=64, checkpoint_every=3)),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_equals_uninterrupted_run(data, tmp_path, case):
    c = RESUME_CASES[case]
    M = 32

    def trainer(max_steps, run_dir=None):
        return Trainer(build(c["noise"], seed=7), data, c["algorithm"](),
                       TrainSettings(max_steps=max_steps, **c["settings"]), run_dir=run_dir)

    a = trainer(M).run()
    first = trainer(M // 2, tmp_path).run()
    assert first.metrics["steps"] == M // 2 and not first.metrics["resumed"]
    b = trainer(M, tmp_path).run()
    assert b.metrics["resumed"] and b.status == a.status == "max_steps"
    assert state_equal(a.model.state_dict(), b.model.state_dict())
    pd.testing.assert_frame_equal(a.history.drop(columns="time"), b.history.drop(columns="time"))
    if case.startswith("calibrated"):
        assert (a.history["event"] == "calibrate").sum() == M // 4 - 1


def test_a_checkpoint_resumes_only_on_the_device_that_wrote_it(data, tmp_path, monkeypatch):
    """The replicates' random streams are device generators (a CPU generator's state cannot be loaded into a
    CUDA one): a checkpoint says where it was written, and resuming it elsewhere is refused in one clear line."""
    def trainer(max_steps):
        return Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=3, max_steps=max_steps),
                       run_dir=tmp_path)

    trainer(6).run()
    assert load_checkpoint(tmp_path)[1]["device"] == "cpu"
    assert trainer(9).run().metrics["resumed"]  # the same device resumes
    monkeypatch.setattr(Trainer, "_meta_state", lambda self: {"device": "cuda"})  # as if written on a GPU
    trainer(12).run()
    monkeypatch.undo()
    with pytest.raises(DataError, match="written on cuda: its random streams resume only there"):
        trainer(15).run()


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_keeps_last_good_checkpoint(data, tmp_path):
    """The decoder turns NaN from the 18th gradient step: status 'nan', and both the file
    on disk and the returned model hold the checkpoint of step 15 (end of block 3)."""
    model = build("learned")
    nan_from, seen = 18, {"steps": 0}

    def poison(module, inputs, output):
        if not torch.is_grad_enabled():  # evaluation passes (terms, metrics) stay finite
            return output
        seen["steps"] += 1
        if seen["steps"] >= nan_from:
            return output * float("nan")
        return output

    model.decoder.register_forward_hook(poison)
    settings = TrainSettings(K=5, max_steps=100, tol=0.0, checkpoint_every=1)
    # pyro's argument validation would raise on the NaN location before the trainer sees
    # a NaN loss; pyrovae.api.train runs the trainer the same way
    with pyro.validation_enabled(False):
        result = Trainer(model, data, make_algorithm("joint"), settings, run_dir=tmp_path).run()
    assert result.status == "nan" and result.metrics["status"] == "nan"
    assert len(result.history) == 3 and result.history["step"].iloc[-1] == 15
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 15 < nan_from
    assert torch.isfinite(torch.cat([t.flatten() for t in tensors["models"]["0"].values()])).all()
    assert state_equal(result.model.state_dict(), tensors["models"]["0"])
    # steps 16 and 17 ran (and moved the weights) before the NaN: the model is block 3's, restored
    assert seen["steps"] >= nan_from


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_without_run_dir_reports_status(data):
    model = build("learned")
    model.decoder.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pyro.validation_enabled(False):
        result = Trainer(model, data, make_algorithm("joint"), TrainSettings(K=2, max_steps=10)).run()
    assert result.status == "nan" and len(result.history) == 0


def test_overflowing_gradient_with_a_finite_loss_is_not_applied(data):
    """A finite loss whose gradient overflows stops the run without touching the weights."""
    model = build("learned")
    trainer = Trainer(model, data, make_algorithm("joint"), TrainSettings(K=2, max_steps=10))
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.parameters("decoder")[0].register_hook(lambda g: g * float("inf"))
    assert math.isnan(trainer.step(data.condition, data.observed))
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert trainer.run().status == "nan"


def test_training_runs_on_the_settings_thread_count(data, monkeypatch):
    """One torch thread by default (robust when other work shares the cores), more on request."""
    seen = []
    original = Trainer.step

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=2, max_steps=2)).run()
        assert set(seen) == {1}
        seen.clear()
        Trainer(build("learned"), data, make_algorithm("joint"), TrainSettings(K=2, max_steps=2, threads=2)).run()
        assert set(seen) == {2}
        with pytest.raises(ConfigError):
            TrainSettings(threads=0)
    finally:
        torch.set_num_threads(before)
