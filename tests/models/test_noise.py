"""Observation models: fixed, calibrated (set from outside) and learned sigma."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.models import CalibratedNoise, FixedNoise, LearnedNoise, make_noise

MEAN = torch.randn(7, 3)
BAD_SIGMAS = [0.0, -1.0, float("nan"), float("inf")]


def _scale(noise):
    s = noise.scale(MEAN)
    return torch.broadcast_to(s, MEAN.shape)


@pytest.mark.parametrize("cls", [FixedNoise, CalibratedNoise, LearnedNoise])
def test_scale_is_sigma_everywhere(cls):
    noise = cls(0.37)
    assert noise.sigma == pytest.approx(0.37, rel=1e-6)
    torch.testing.assert_close(_scale(noise), torch.full_like(MEAN, 0.37))


@pytest.mark.parametrize("cls", [FixedNoise, CalibratedNoise, LearnedNoise])
@pytest.mark.parametrize("sigma", BAD_SIGMAS)
def test_bad_initial_sigma(cls, sigma):
    with pytest.raises(ConfigError):
        cls(sigma)


def test_fixed_noise_is_neither_settable_nor_learned():
    noise = FixedNoise(0.5)
    assert not noise.settable and not noise.learned
    assert list(noise.parameters()) == []
    assert not hasattr(noise, "set_sigma")
    assert "value" in noise.state_dict()


def test_calibrated_noise_set_sigma():
    noise = CalibratedNoise(1.0)
    assert noise.settable and not noise.learned
    assert list(noise.parameters()) == []  # a buffer: no gradient ever moves it
    noise.set_sigma(0.25)
    assert noise.sigma == pytest.approx(0.25)
    torch.testing.assert_close(_scale(noise), torch.full_like(MEAN, 0.25))
    noise.set_sigma(torch.tensor(0.125))
    assert noise.sigma == pytest.approx(0.125)
    assert noise.state_dict()["value"].item() == pytest.approx(0.125)


@pytest.mark.parametrize("sigma", BAD_SIGMAS)
def test_calibrated_noise_refuses_bad_sigma_and_keeps_old_value(sigma):
    noise = CalibratedNoise(0.5)
    with pytest.raises(FloatingPointError):
        noise.set_sigma(sigma)
    assert noise.sigma == pytest.approx(0.5)


def test_calibrated_noise_follows_dtype():
    noise = CalibratedNoise(0.5).double()
    noise.set_sigma(0.3)
    assert noise.value.dtype == torch.float64 and noise.sigma == pytest.approx(0.3)


def test_learned_noise_is_exp_of_a_parameter_with_gradient():
    noise = LearnedNoise(0.8)
    assert noise.learned and not noise.settable
    (param,) = list(noise.parameters())
    assert param.item() == pytest.approx(math.log(0.8))
    s = noise.scale(MEAN)
    s.backward()
    # d exp(log s) / d log s = s
    assert param.grad.item() == pytest.approx(0.8, rel=1e-6)
    with torch.no_grad():
        param.fill_(math.log(2.0))
    assert noise.sigma == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("kind, cls", [("fixed", FixedNoise), ("calibrated", CalibratedNoise), ("learned", LearnedNoise)])
def test_make_noise(kind, cls):
    noise = make_noise(kind, 0.3)
    assert type(noise) is cls and noise.sigma == pytest.approx(0.3, rel=1e-6)


def test_make_noise_unknown_name():
    with pytest.raises(UnknownNameError):
        make_noise("heteroscedastic-ish", 1.0)
    with pytest.raises(ConfigError):  # UnknownNameError is a ConfigError
        make_noise("nope", 1.0)


def test_stacked_scale_is_each_replicates_own_scale_side_by_side():
    """The batched replicates' fast path: σ of three stacked replicates from their stacked state equals
    each replicate's own ``scale``; a σ that depends on the point has no fast path (None)."""
    from pyrovae.models import LearnedVectorNoise, NetworkNoise, ScheduledNoise

    mean = torch.zeros(5, 2)
    kinds = [[FixedNoise(s) for s in (0.1, 0.5, 2.0)], [CalibratedNoise(s) for s in (0.3, 1.0, 0.05)],
             [LearnedNoise(s) for s in (0.1, 0.5, 2.0)], [LearnedVectorNoise(s, 2) for s in (0.1, 0.5, 2.0)],
             [ScheduledNoise(s) for s in ([0.2, 0.1], [0.7, 0.7], [1.5, 0.5])]]
    kinds[3][1].log_sigma.data = torch.tensor([0.3, -1.2])
    for replicas in kinds:
        state = {name: torch.stack([dict([*m.named_parameters(), *m.named_buffers()])[name] for m in replicas])
                 for name, _ in [*replicas[0].named_parameters(), *replicas[0].named_buffers()]}
        expected = torch.stack([m.scale(mean) for m in replicas])
        assert torch.equal(replicas[0].stacked_scale(state, mean), expected), type(replicas[0]).__name__
    with pytest.raises(ConfigError, match="2 outputs"):
        LearnedVectorNoise(1.0, 2).stacked_scale({"log_sigma": torch.zeros(3, 2)}, torch.zeros(5, 3))
    assert NetworkNoise(2, 2, sigma=1.0).stacked_scale({}, mean) is None

    class Doubled(LearnedNoise):  # a user's σ: the inherited fast path must not stand in for it
        def scale(self, mean, inputs=None):
            return 2 * self.log_sigma.exp()

    assert Doubled(0.5).stacked_scale({"log_sigma": torch.zeros(3)}, mean) is None
