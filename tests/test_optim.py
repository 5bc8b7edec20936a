"""The learning-rate schedules of pyrovae.optim at known steps."""

from __future__ import annotations

import pytest
import torch

from pyrovae.optim import adam, linear_decay


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
