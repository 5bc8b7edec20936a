"""The M2 trainer and the functional-collapse diagnostics (Yacoby, Pan & Doshi-Velez 2021, Sec. 7)."""

from __future__ import annotations

import math

import pytest
import torch

import pyrovae.inference.m2_training as m2t
from pyrovae.data.yacoby_m2 import (
    continuous_semicircle,
    discrete_semicircle,
    semicircle_f,
)
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.m2_training import (
    train_m2,
    train_m2_batch,
    unlabelled_mutual_information,
)
from pyrovae.metrics.information import aggregate_posterior_mutual_information
from pyrovae.metrics.semisupervised import (
    cohort_knn,
    decoder_spread,
    functional_collapse,
    label_accuracy,
)
from pyrovae.models.m2 import M2


@pytest.mark.parametrize("kind,objective", [("discrete", "elbo"), ("discrete", "iwae"), ("relaxed", "elbo"),
                                            ("continuous", "elbo"), ("continuous", "iwae")])
def test_training_lowers_the_loss(kind, objective):
    make = continuous_semicircle if kind == "continuous" else discrete_semicircle
    data = make(n=200, seed=0)
    model = M2(2, kind, widths=(16, 16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_m2(model, data, objective, epochs=4, batch_size=50, lr=1e-2, alpha=1.0, particles=3)
    losses = [r["loss"] for r in res.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trainer_rejects_bad_options():
    data = discrete_semicircle(n=50)
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, "renyi")
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, epochs=0)


def test_collapse_score_is_zero_for_a_decoder_that_ignores_y():
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(8,))
    assert decoder_spread(model, 0, 1) > 0
    with torch.no_grad():
        model.decoder[0].weight[:, model.latent_dim:] = 0.0  # the first layer no longer reads y
    s = functional_collapse(model, lambda z, y: semicircle_f(z, y), 0, 1)
    assert s.learned == 0.0 and s.score == 0.0 and 0.5 < s.truth < 2.0


def test_label_accuracy_and_cohort_knn():
    torch.manual_seed(0)
    data = discrete_semicircle(n=100)
    model = M2(2, "discrete", widths=(8,))
    acc = label_accuracy(model, data.points, data.labels)["accuracy"]
    assert 0.0 <= acc <= 1.0
    c = M2(2, "continuous", widths=(8,))
    out = label_accuracy(c, data.points, data.labels * 2 - 1)
    assert set(out) == {"rmse", "sign_accuracy"}
    ref = data.points[:40]
    assert cohort_knn(model, 0, ref) > cohort_knn(model, 0, ref) - 1e-9  # deterministic given the seed


# -- Lagging Inference Networks (He et al. 2019, Alg. 1) for M2 ----------------------------------------
def test_aggressive_phase_changes_only_the_guide(monkeypatch):
    """In aggressive mode (I(x; z) scripted to rise) each batch gets encoder-only inner steps, then one
    decoder-only step: right after the first inner loop the decoder must be bit-identical while the
    guide has moved; after the next one (which follows a decoder step) the decoder has moved."""
    data = discrete_semicircle(n=200, seed=0)
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(16, 16))
    names = [name for name, _ in model.named_parameters()]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rising = iter(range(100))
    monkeypatch.setattr(m2t, "unlabelled_mutual_information", lambda model, x: float(next(rising)))
    stacks = []  # the one-model stack LIN trains (the model itself is written at the end of each epoch)
    real_stack = m2t.ReplicatedM2.stack
    monkeypatch.setattr(m2t.ReplicatedM2, "stack", lambda *a: stacks.append(real_stack(*a)) or stacks[-1])
    # the step that touches the decoder: the first optimiser stepped after each encoder phase
    real_phase = m2t.encoder_phase
    checked, moved = [], []

    def phase_then_check(step, running, max_inner, window, threshold):
        assert threshold == 0.0 and running == [True]  # He et al.'s code unless lagging_threshold says otherwise
        n = real_phase(step, running, max_inner, window, threshold)
        now = {name: stacks[0].stacked("param")[name][0] for name in names}
        checked.append(all(torch.equal(before[k], now[k]) for k in names if k.startswith("decoder.")))
        moved.append(any(not torch.equal(before[k], now[k]) for k in names if not k.startswith("decoder.")))
        return n

    monkeypatch.setattr(m2t, "encoder_phase", phase_then_check)
    res = train_m2(model, data, epochs=1, batch_size=100, lr=1e-2, alpha=1.0, lagging=True, aggressive_inner=6,
                   lagging_window=2)
    # the first encoder phase runs before any decoder step: the decoder is untouched by it
    assert checked[0] is True and moved[0] is True and len(checked) == 2  # 180 unlabelled points, batches of 100
    assert 2 <= res.history[0]["inner_steps"] <= 12 and res.history[0]["aggressive"]
    # the decoder-only step did move the decoder (the first check after it fails)
    assert checked[1] is False


def test_aggressive_mode_ends_when_mutual_information_stops_rising(monkeypatch):
    data = discrete_semicircle(n=200, seed=1)
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(8,))
    mis = iter([0.1, 0.3, 0.2, 0.9, 1.0])  # rises, rises, falls -> off after the third epoch
    seen = []

    def scripted(model, x):
        seen.append(x.shape[0])
        return next(mis)

    monkeypatch.setattr(m2t, "unlabelled_mutual_information", scripted)
    res = train_m2(model, data, epochs=5, batch_size=100, lr=1e-2, alpha=1.0, lagging=True, aggressive_inner=3,
                   lagging_window=1, mi_points=50)
    assert [r["aggressive"] for r in res.history] == [True, True, True, False, False]
    assert [r["mi"] for r in res.history] == [0.1, 0.3, 0.2, None, None]
    assert all(r["inner_steps"] >= 2 for r in res.history[:3]) and all(r["inner_steps"] == 0 for r in res.history[3:])
    assert seen == [50, 50, 50]


def test_unlabelled_mutual_information_matches_the_estimator():
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(8,))
    x = discrete_semicircle(n=100, seed=2).points
    with torch.no_grad():
        loc, scale = model.z_encoder_x(x)
    expected = float(aggregate_posterior_mutual_information(loc, scale, seed=0))
    assert unlabelled_mutual_information(model, x) == pytest.approx(expected, abs=1e-7)
    assert 0.0 <= unlabelled_mutual_information(model, x) <= math.log(100) + 1e-6


def test_lagging_rejects_bad_options():
    data = discrete_semicircle(n=50)
    with pytest.raises(ConfigError):
        train_m2(M2(2, z_guide="conditional"), data, lagging=True)
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, lagging=True, parameters="encoder")
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, lagging=True, aggressive_inner=0)
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, lagging=True, mi_points=1)


def test_lin_leaves_the_model_at_the_weights_it_trained_last(monkeypatch):
    """LIN trains a one-model stack: after two aggressive epochs and a joint one, the model holds the stack's
    final weights (not those written for the last aggressive epoch's I(x; z))."""
    data = discrete_semicircle(n=200, seed=0)
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(16, 16))
    falling = iter([1.0, 0.0])  # I(x; z) falls after the second epoch: aggressive mode ends there
    written = {}

    def remember(model, x):  # the weights the loop wrote for the measurement
        written.update({k: v.clone() for k, v in model.state_dict().items()})
        return next(falling)

    monkeypatch.setattr(m2t, "unlabelled_mutual_information", remember)
    stacks = []
    real_stack = m2t.ReplicatedM2.stack
    monkeypatch.setattr(m2t.ReplicatedM2, "stack", lambda *a: stacks.append(real_stack(*a)) or stacks[-1])
    res = train_m2(model, data, epochs=3, batch_size=100, lr=1e-2, lagging=True, aggressive_inner=4, lagging_window=2)
    assert [h["aggressive"] for h in res.history] == [True, True, False]
    final = {name: t[0] for name, t in stacks[0].stacked("param").items()}
    assert all(torch.equal(v, final[k]) for k, v in model.named_parameters())
    assert any(not torch.equal(v, written[k]) for k, v in model.named_parameters())


def test_lin_killed_in_its_fourth_epoch_resumes_from_its_checkpoint_to_the_uninterrupted_run(tmp_path, interrupt_at_block):
    """LIN trains on the engine, so it keeps checkpoints: its mode, best I(x; z) and both Adams come back with the
    weights and the stream, and the resumed run ends where the uninterrupted one does, bit for bit."""
    data = discrete_semicircle(n=200, seed=0)

    def run(run_dir=None):
        torch.manual_seed(0)
        model = M2(2, "discrete", widths=(16, 16))
        lagging = m2t.M2Lagging(max_inner=6, window=2, mi_points=50)
        result = m2t.M2Trainer([model], data, epochs=5, batch_size=50, lr=1e-2, seeds=[0], run_dir=run_dir,
                               checkpoint_every=1, lagging=lagging).run()[0]
        return model, result

    whole, expected = run()
    # I(x; z) first fails to rise in epoch 4, against the best of epoch 3: only a restored best ends the mode there
    assert [h["aggressive"] for h in expected.history] == [True, True, True, True, False]
    disarm = interrupt_at_block(m2t.M2Trainer, "_lagging_epoch", 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path)
    disarm()
    resumed, result = run(tmp_path)
    assert [(h["loss"], h["aggressive"], h["inner_steps"], h["mi"]) for h in result.history] == [
        (h["loss"], h["aggressive"], h["inner_steps"], h["mi"]) for h in expected.history]
    assert all(torch.equal(v, whole.state_dict()[k]) for k, v in resumed.state_dict().items())


# -- LIN as a batch: each model its own mode and inner loops ----------------------------------------
LIN = dict(epochs=6, batch_size=50, lr=1e-2, lagging=True, aggressive_inner=8, lagging_window=2)


def _lin_models(seeds):
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(M2(2, "discrete", widths=(16, 16)))
    return models


def _lin_rows(result):
    return [(h["aggressive"], h["inner_steps"]) for h in result.history]


@pytest.fixture
def double_precision():
    """In double precision: with lr = 0.01 and up to 8 encoder steps a batch, float32 rounding (a batch's products
    against one model's) grows to 0.4 % of seed 2's loss in six epochs; in float64 the paths agree to 1e-6."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def test_lin_models_of_a_batch_each_equal_their_run_alone(double_precision):
    """Seeds 1, 2 and 3 leave aggressive mode after epochs 3, 4 and 5, each with inner loops of its own length
    (28-40 encoder-only steps an epoch), so the batch mixes joint and aggressive models from epoch 4 on: every
    model of the batch is train_m2 alone."""
    data = discrete_semicircle(n=300, seed=0)
    batch = train_m2_batch(_lin_models([1, 2, 3]), data, seeds=[1, 2, 3], **LIN)
    assert [[h["aggressive"] for h in r.history].count(True) for r in batch] == [3, 4, 5]
    for seed, result in zip((1, 2, 3), batch):
        (model,) = _lin_models([seed])
        alone = train_m2(model, data, seed=seed, **LIN)
        assert _lin_rows(result) == _lin_rows(alone)
        torch.testing.assert_close(torch.tensor([h["loss"] for h in result.history]),
                                   torch.tensor([h["loss"] for h in alone.history]), rtol=1e-5, atol=1e-6)
        for (name, a), b in zip(result.model.state_dict().items(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert len({tuple(_lin_rows(r)) for r in batch}) == 3


def test_a_lin_batch_killed_in_its_fourth_epoch_resumes_to_the_uninterrupted_batch(tmp_path, interrupt_at_block):
    """Killed in the fourth epoch, in which seed 1 is joint and the others still aggressive: each
    model's mode and best I(x; z) and the shared Adams come back, and the batch ends as the uninterrupted one."""
    data = discrete_semicircle(n=300, seed=0)
    whole = train_m2_batch(_lin_models([1, 2, 3]), data, seeds=[1, 2, 3], **LIN)
    disarm = interrupt_at_block(m2t.M2Trainer, "_lagging_epoch", 3)
    with pytest.raises(KeyboardInterrupt):
        train_m2_batch(_lin_models([1, 2, 3]), data, seeds=[1, 2, 3], run_dir=tmp_path, checkpoint_every=1, **LIN)
    disarm()
    resumed = train_m2_batch(_lin_models([1, 2, 3]), data, seeds=[1, 2, 3], run_dir=tmp_path, checkpoint_every=1,
                             **LIN)
    assert all(r.resumed for r in resumed)
    for a, b in zip(whole, resumed):
        assert [(h["loss"], h["aggressive"], h["inner_steps"], h["mi"]) for h in a.history] == [
            (h["loss"], h["aggressive"], h["inner_steps"], h["mi"]) for h in b.history]
        assert all(torch.equal(v, a.model.state_dict()[k]) for k, v in b.model.state_dict().items())


def test_a_lin_model_that_diverges_leaves_the_batch_and_the_others_train_on_as_alone(double_precision, monkeypatch):
    """Model 1's loss is made non-finite from its third epoch on: it stops with status nan and its last finite
    epoch's weights, the batch narrows (the plug-in Adams with it) and models 0 and 2 end as they do alone."""
    data = discrete_semicircle(n=300, seed=0)
    real_loss = m2t.M2Trainer._loss

    def poisoned(self, iu, il):
        losses = real_loss(self, iu, il)
        if self.state.block >= 2 and 1 in self.active:
            hit = torch.tensor([r == 1 for r in self.active], device=losses.device)
            losses = torch.where(hit, torch.full_like(losses, math.nan), losses)
        return losses

    monkeypatch.setattr(m2t.M2Trainer, "_loss", poisoned)
    models = _lin_models([1, 2, 3])
    batch = train_m2_batch(models, data, seeds=[1, 2, 3], **LIN)
    assert [r.status for r in batch] == ["done", "nan", "done"] and len(batch[1].history) == 2
    monkeypatch.setattr(m2t.M2Trainer, "_loss", real_loss)
    for seed, result in ((1, batch[0]), (3, batch[2])):
        (model,) = _lin_models([seed])
        alone = train_m2(model, data, seed=seed, **LIN)
        assert _lin_rows(result) == _lin_rows(alone)
        for (name, a), b in zip(result.model.state_dict().items(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_a_lin_checkpoint_of_the_one_model_version_is_refused_before_anything_loads(tmp_path):
    data = discrete_semicircle(n=200, seed=0)
    trainer = m2t.M2Trainer(_lin_models([1]), data, epochs=2, seeds=[1], run_dir=tmp_path,
                            lagging=m2t.M2Lagging(max_inner=4, window=2))
    old = {"settings": trainer.fingerprint, "block": 1, "lagging": {"aggressive": True, "best_mi": 0.3}}
    with pytest.raises(DataError, match="older version"):
        trainer._check_checkpoint(old)
