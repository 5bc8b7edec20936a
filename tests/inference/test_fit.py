"""Networks fitted to a loss in the engine's loop (:mod:`pyrovae.inference.fit`): a fit is Adam on the loss (checked
against torch's own Adam and one-cycle schedule, step by step), replicate r of a batch is the fit its seed gives
alone, a diverged replicate stops and keeps its last good block while the others finish, a check stops a
replicate, and an interrupted fit resumes to the uninterrupted one's weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.fit import Fit, fit_module
from pyrovae.models.nets import MLP

X = torch.randn(120, 4, generator=torch.Generator().manual_seed(0))


def autoencoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(MLP(4, [8], 2, "tanh"), MLP(2, [8], 4, "tanh"))


def minibatch_loss(stack) -> torch.Tensor:
    xb = X[stack.streams.randint(len(X), 16)]  # each replicate's own draws
    return ((stack(xb) - xb) ** 2).sum(-1).mean(-1)


def full_batch_loss(stack) -> torch.Tensor:
    return ((stack(X, shared=True) - X) ** 2).sum(-1).mean(-1)


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def test_a_fit_is_adam_with_its_schedule_step_by_step():
    """Full batch: the fitted weights are those of torch's Adam with OneCycleLR on the same loss, by hand."""
    fitted = fit_module(autoencoder(1), full_batch_loss, steps=60, lr=0.02, every=7, schedule="one_cycle", seeds=[0])
    by_hand = autoencoder(1)
    optimizer = torch.optim.Adam(by_hand.parameters(), lr=0.02)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.02, total_steps=60)
    for _ in range(60):
        optimizer.zero_grad()
        loss = ((by_hand(X) - X) ** 2).sum(-1).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
    assert fitted.status == "max_steps" and fitted.steps == 60
    assert _max_difference(fitted.module, by_hand) < 1e-5
    assert fitted.loss == pytest.approx(float(loss), rel=1e-5)  # the last step's loss


def test_each_replicate_of_a_batch_is_the_fit_its_seed_gives_alone():
    seeds = [11, 12, 13]
    batch = Fit([autoencoder(s) for s in (1, 2, 3)], minibatch_loss, steps=90, lr=0.01, every=20,
                schedule="linear_decay", seeds=seeds).run()
    for r, (model_seed, stream_seed) in enumerate(zip((1, 2, 3), seeds)):
        alone = fit_module(autoencoder(model_seed), minibatch_loss, steps=90, lr=0.01, every=20,
                           schedule="linear_decay", seeds=[stream_seed])
        assert (batch[r].status, batch[r].steps) == (alone.status, alone.steps) == ("max_steps", 90)
        assert _max_difference(batch[r].module, alone.module) < 1e-5
    assert _max_difference(batch[0].module, batch[1].module) > 1e-2  # their own fits, not one shared


def test_a_diverged_replicate_stops_with_its_last_good_block_and_the_others_finish():
    calls = {"n": 0}

    def loss(stack):
        calls["n"] += 1
        losses = full_batch_loss(stack)
        if stack.replicates == 2 and calls["n"] > 25:  # replicate 1 of the batch turns NaN at step 26
            losses = losses * torch.tensor([1.0, math.nan])
        return losses

    reference = fit_module(autoencoder(2), full_batch_loss, steps=20, lr=0.01, every=10, seeds=[5])
    batch = Fit([autoencoder(1), autoencoder(2)], loss, steps=50, lr=0.01, every=10, seeds=[4, 5]).run()
    alone = fit_module(autoencoder(1), full_batch_loss, steps=50, lr=0.01, every=10, seeds=[4])
    assert (batch[1].status, batch[1].steps) == ("nan", 20)
    assert _max_difference(batch[1].module, reference.module) < 1e-6  # the weights of its block ending at step 20
    assert (batch[0].status, batch[0].steps) == ("max_steps", 50)
    assert _max_difference(batch[0].module, alone.module) < 1e-5


def test_a_check_stops_its_replicate_at_the_end_of_a_block():
    def below(r: int, module: nn.Module) -> bool:
        with torch.no_grad():
            return float(((module(X) - X) ** 2).sum(-1).mean()) < 1.5

    result = fit_module(autoencoder(3), full_batch_loss, steps=5000, lr=0.02, every=25, check=below, seeds=[0])
    assert result.status == "converged" and result.steps % 25 == 0 and result.steps < 5000
    with torch.no_grad():
        assert float(((result.module(X) - X) ** 2).sum(-1).mean()) < 1.5


def test_an_interrupted_fit_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = fit_module(autoencoder(4), minibatch_loss, steps=60, lr=0.01, every=10, seeds=[8])
    first = autoencoder(4)
    fit_module(first, minibatch_loss, steps=30, lr=0.01, every=10, seeds=[8], run_dir=tmp_path, checkpoint_every=1)
    # another starting module: only the checkpoint can bring it to the uninterrupted weights
    resumed = fit_module(autoencoder(5), minibatch_loss, steps=60, lr=0.01, every=10, seeds=[8], run_dir=tmp_path)
    assert resumed.steps == 60
    assert _max_difference(resumed.module, whole.module) == 0.0
    with pytest.raises(DataError, match="other settings"):
        fit_module(autoencoder(4), minibatch_loss, steps=60, lr=0.02, every=10, seeds=[8], run_dir=tmp_path)


def test_bad_fits_are_refused_by_name():
    with pytest.raises(ConfigError, match="steps >= 0 and every >= 1"):
        Fit([autoencoder(1)], full_batch_loss, steps=10, lr=0.01, every=0)
    with pytest.raises(ConfigError, match="one architecture"):
        Fit([autoencoder(1), nn.Sequential(MLP(4, [9], 2), MLP(2, [8], 4))], full_batch_loss, steps=10, lr=0.01)
    with pytest.raises(ConfigError, match="learning-rate schedule"):
        Fit([autoencoder(1)], full_batch_loss, steps=10, lr=0.01, schedule="cosine")
    fit = Fit([autoencoder(1), autoencoder(2)], full_batch_loss, steps=10, lr=0.01)
    with pytest.raises(ConfigError, match="shared by its replicates"):
        fit.scale_lr(0.5)
