"""pyrovae.optim: the Minimiser (its schedules at known steps, its NaN policy), the per-replicate step,
ReplicateAdam."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, TrainingDiverged
from pyrovae.inference.replicates import ReplicaStreams
from pyrovae.optim import Minimiser, ReplicateAdam, select_replicates, step_replicates


def _rates(minimiser: Minimiser, w: torch.Tensor, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(minimiser.lr)
        minimiser.step(lambda: (w ** 2).sum())
    return rates


def test_linear_decay_falls_linearly_to_its_floor_and_stays():
    w = torch.ones(1, requires_grad=True)
    rates = _rates(Minimiser.adam([w], lr=0.2, schedule="linear_decay", steps=10), w, 13)
    assert rates[:3] == pytest.approx([0.2, 0.18, 0.16])
    assert rates[9] == pytest.approx(0.02)  # 1 − 9/10
    assert rates[10:] == pytest.approx([0.002] * 3)  # 1 % of 0.2, held


def test_one_cycle_starts_at_a_25th_of_its_peak_and_peaks_at_30_percent():
    """Smith's one-cycle as torch defines it: lr / 25 at the start, ``lr`` at step 0.3 · steps − 1 = 32 (cosine
    annealing between: halfway at step 16), lr / 25 / 10⁴ at the last step."""
    w = torch.ones(1, requires_grad=True)
    rates = _rates(Minimiser.adam([w], lr=0.5, schedule="one_cycle", steps=110), w, 110)
    assert rates[0] == pytest.approx(0.02)
    assert max(rates) == pytest.approx(0.5) and rates.index(max(rates)) == 32
    assert rates[16] == pytest.approx((0.02 + 0.5) / 2)
    assert rates[-1] == pytest.approx(0.02 / 1e4)
    with pytest.raises(ConfigError, match="schedule"):
        Minimiser.adam([w], lr=0.5, schedule="cosine", steps=10)
    with pytest.raises(ConfigError, match="steps"):
        Minimiser.adam([w], lr=0.5, schedule="one_cycle")
    assert Minimiser.adam([w], lr=0.5, schedule="one_cycle", steps=0).scheduler is None  # a fit of no steps


def test_a_minimiser_does_not_apply_a_non_finite_step_and_stops_or_raises():
    """A loss that turns NaN at its 4th evaluation: run stops with status nan after 3 steps, the weights where
    3 Adam steps left them (a 4th, applied, would move them); on_nan="raise" raises; a check stops the loop."""
    def fit(on_nan="stop", check=None):
        w = torch.tensor([1.0, -2.0], requires_grad=True)
        calls = []
        def loss():
            calls.append(1)
            value = ((w - 3.0) ** 2).sum()
            return value * math.nan if len(calls) == 4 else value
        return w, Minimiser.adam([w], lr=0.1).run(loss, 10, every=2, check=check, on_nan=on_nan)

    w, outcome = fit()
    assert (outcome.status, outcome.steps) == ("nan", 3)
    reference = torch.tensor([1.0, -2.0], requires_grad=True)
    Minimiser.adam([reference], lr=0.1).run(lambda: ((reference - 3.0) ** 2).sum(), 3)
    assert torch.equal(w.detach(), reference.detach())
    assert outcome.loss == pytest.approx(float(((reference - 3.0) ** 2).sum().detach()), rel=0.2)
    with pytest.raises(TrainingDiverged, match="step 4"):
        fit(on_nan="raise")
    w, outcome = fit(check=lambda step: step >= 2)
    assert (outcome.status, outcome.steps) == ("stopped", 2)
    w = torch.zeros(1, requires_grad=True)
    assert torch.isnan(Minimiser.adam([w], 0.1).step(lambda: w.sum() * math.inf))
    assert torch.equal(w.detach(), torch.zeros(1))


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


def test_lbfgs_minimiser_reaches_a_quadratics_exact_minimiser():
    """½ wᵀAw − bᵀw with A positive definite: one L-BFGS step of up to 100 iterations ends at A⁻¹b (to the
    accuracy its default tolerance on the loss change, 1e-12, allows: 1e-12 ≈ δ² for an error δ ≈ 1e-6)."""
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    outcome = Minimiser.lbfgs([w], max_iter=100).run(lambda: 0.5 * w @ A @ w - b @ w, 1)
    assert outcome.status == "done"
    torch.testing.assert_close(w.detach(), torch.linalg.solve(A, b), rtol=0, atol=1e-6)
    assert outcome.loss == pytest.approx(0.0)  # the loss of the step's first evaluation, at w = 0
