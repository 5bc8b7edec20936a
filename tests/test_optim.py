"""pyrovae.optim: the learning-rate schedules at known steps, the per-replicate step, ReplicateAdam."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.replicates import ReplicaStreams
from pyrovae.optim import ReplicateAdam, adam, linear_decay, select_replicates, step_replicates


def test_linear_decay_falls_linearly_to_its_floor_and_stays():
    opt = adam([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = linear_decay(opt, steps=10, floor=0.05)
    rates = []
    for _ in range(13):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:3] == pytest.approx([0.2, 0.18, 0.16])
    assert rates[9] == pytest.approx(0.02)  # 1 − 9/10
    assert rates[10:] == pytest.approx([0.01] * 3)  # 0.05 × 0.2, held


def test_step_replicates_steps_each_replicate_as_alone_and_skips_a_non_finite_one():
    target = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 0.0]])
    w = torch.zeros(3, 3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)  # SGD: the step shows the clipping (Adam's first step would hide it)
    losses = ((w - target) ** 2).sum(1) * torch.tensor([10.0, 1.0, math.nan])
    ok = step_replicates(losses, opt, clip_norm=1.0)
    assert ok.tolist() == [True, True, False]
    assert torch.equal(w[2].detach(), torch.zeros(3))  # its gradient was zeroed
    for r, scale in ((0, 10.0), (1, 1.0)):  # as one run with torch's own clipping
        alone = torch.zeros(3, requires_grad=True)
        one = torch.optim.SGD([alone], lr=0.1)
        (((alone - target[r]) ** 2).sum() * scale).backward()
        torch.nn.utils.clip_grad_norm_([alone], 1.0)
        one.step()
        torch.testing.assert_close(w[r].detach(), alone.detach())
    assert not step_replicates(torch.full((3,), math.inf, requires_grad=True), opt).any()


def _quadratic(w, target, scale):
    return (scale * (w - target) ** 2).sum(-1)


def test_replicate_adam_moves_each_replicate_as_torch_adam_over_its_own_steps():
    """Three replicates, 12 steps, replicate r stepping only where its mask is True: each slice ends where
    torch's Adam (single tensor, double precision) ends after the same gradients on the steps it took, and a
    replicate that sits a step out keeps its weights, moments and step count exactly."""
    torch.manual_seed(0)
    target, scale = torch.randn(3, 4, dtype=torch.float64), torch.rand(3, 4, dtype=torch.float64) + 0.5
    start = torch.randn(3, 4, dtype=torch.float64)
    masks = torch.rand(12, 3) < 0.6
    masks[0] = torch.tensor([True, False, True])
    w = start.clone().requires_grad_(True)
    opt = ReplicateAdam([w], lr=0.1)
    for mask in masks:
        before = w.detach().clone()
        state_before = {k: v.clone() for k, v in opt.state[w].items()} if opt.state[w] else None
        opt.zero_grad()
        _quadratic(w, target, scale).sum().backward()
        opt.step(mask)
        idle = ~mask
        assert torch.equal(w.detach()[idle], before[idle])
        if state_before is not None:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(opt.state[w][key][idle], state_before[key][idle]), key
    assert opt.state[w]["step"].tolist() == masks.sum(0).tolist()
    for r in range(3):
        alone = start[r].clone().requires_grad_(True)
        reference = torch.optim.Adam([alone], lr=0.1, foreach=False)
        for mask in masks:
            if mask[r]:
                reference.zero_grad()
                _quadratic(alone, target[r], scale[r]).backward()
                reference.step()
        torch.testing.assert_close(w.detach()[r], alone.detach(), rtol=1e-12, atol=1e-12)


def test_replicate_adam_without_a_mask_is_adam_and_its_state_narrows_to_the_kept_replicates():
    torch.manual_seed(1)
    target = torch.randn(3, 2, dtype=torch.float64)
    w = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    opt = ReplicateAdam([w], lr=0.05)
    reference_w = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([reference_w], lr=0.05, foreach=False)
    for _ in range(5):
        for o, x in ((opt, w), (reference, reference_w)):
            o.zero_grad()
            ((x - target) ** 2).sum().backward()
            o.step()
    torch.testing.assert_close(w.detach(), reference_w.detach(), rtol=1e-12, atol=1e-12)
    keep = torch.tensor([0, 2])
    narrowed = ReplicateAdam([w.detach()[keep].clone().requires_grad_(True)], lr=0.05)
    narrowed.load_state_dict(select_replicates(opt.state_dict(), keep))
    assert narrowed.state[narrowed.param_groups[0]["params"][0]]["step"].tolist() == [5, 5]
    with pytest.raises(ConfigError, match="learning rate"):
        ReplicateAdam([w], lr=0.0)


def test_a_masked_step_leaves_the_others_and_refuses_torch_adam():
    w = torch.zeros(3, 2, requires_grad=True)
    opt = ReplicateAdam([w], lr=0.1)
    losses = ((w - 1.0) ** 2).sum(1) * torch.tensor([1.0, math.nan, 1.0])
    ok = step_replicates(losses, opt, mask=torch.tensor([False, True, True]))
    assert ok.tolist() == [True, False, True]  # 0 sat out (fine), 1 diverged, 2 stepped
    assert w[0].abs().sum() == 0 and w[1].abs().sum() == 0 and (w[2] > 0).all()
    with pytest.raises(ConfigError, match="ReplicateAdam"):
        step_replicates(((w - 1.0) ** 2).sum(1), torch.optim.Adam([w]), mask=torch.tensor([True, False, True]))


def test_masked_replicates_do_not_draw_from_their_streams():
    streams, reference = ReplicaStreams([1, 2, 3]), ReplicaStreams([1, 2, 3])
    with streams.only(torch.tensor([True, False, True])):
        draws = streams.normal((3, 4), dim=0, dtype=torch.float32)
        streams.batch_indices(10, 3)
    expected = reference.normal((3, 4), dim=0, dtype=torch.float32)
    reference.batch_indices(10, 3)
    assert torch.equal(draws[0], expected[0]) and torch.equal(draws[2], expected[2])
    assert torch.equal(streams.generators[1].get_state(), ReplicaStreams([2]).generators[0].get_state())
    assert torch.equal(streams.generators[0].get_state(), reference.generators[0].get_state())
