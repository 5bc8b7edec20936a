"""The learning-rate schedules of pyrovae.optim at known steps."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.optim import adam, linear_decay, step_replicates


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
