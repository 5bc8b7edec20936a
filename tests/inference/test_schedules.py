"""β schedules: Fu et al.'s frange_cycle_linear and Liu & Wang's Eq. 12 / Appendix G.1 settings."""

from __future__ import annotations

import numpy as np
import pytest

from pyrovae.errors import ConfigError
from pyrovae.inference.schedules import BetaSchedule, cyclical, eq12_beta, frange_cycle_linear, monotonic


def test_fu_reference_example():
    np.testing.assert_allclose(
        frange_cycle_linear(10, 0.0, 1.0, 2, 0.5), [0, 0.4, 0.8, 1, 1, 0, 0.4, 0.8, 1, 1], rtol=0, atol=1e-12
    )


def test_fu_other_start_stop_and_ratio():
    # one cycle of 8, ramp over the full period from 0.2 to 1 in steps of 0.1
    np.testing.assert_allclose(frange_cycle_linear(8, 0.2, 1.0, 1, 1.0), 0.2 + 0.1 * np.arange(8), atol=1e-12)
    # ramp over a quarter of each period of 8: 0, 0.5, 1 then hold
    np.testing.assert_allclose(frange_cycle_linear(16, 0, 1, 2, 0.25), [0, 0.5, 1, 1, 1, 1, 1, 1] * 2, atol=1e-12)


def test_monotonic_is_one_ramp_then_one():
    s = monotonic(50)
    for t in range(200):
        assert s(t) == pytest.approx(min(2 * t / 50, 1.0), abs=1e-9), t
    assert s(49) == 1.0 and s(1000) == 1.0
    assert not s.finished(49) and s.finished(50)


def test_cyclical_is_five_ramps_of_ten_then_one():
    s = cyclical(50, 5)
    for t in range(50):
        assert s(t) == pytest.approx(min(2 * (t % 10) / 10, 1.0), abs=1e-9), t
        assert s(t) == pytest.approx(eq12_beta(t, 10), abs=1e-9), t
    for t in range(50, 120):
        assert s(t) == 1.0
    assert [s(t) for t in (0, 10, 20, 30, 40)] == [0.0] * 5


def test_eq12():
    # beta_t = 2r/M for r < M/2, else 1, r = t mod M
    assert [eq12_beta(t, 10) for t in range(12)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 0, 0.2])
    assert [eq12_beta(t, 5) for t in range(5)] == pytest.approx([0, 0.4, 0.8, 1, 1])


def test_beta_always_in_range():
    for s in (monotonic(37), cyclical(60, 4), BetaSchedule(30, 3, 0.7)):
        v = np.array([s(t) for t in range(100)])
        assert v.min() >= 0 and v.max() <= 1


@pytest.mark.parametrize("args", [(0, 0, 1, 1, 0.5), (10, 0, 1, 0, 0.5), (10, 0, 1, 2, 0.0), (10, 0, 1, 2, 1.5)])
def test_bad_arguments(args):
    with pytest.raises(ConfigError):
        frange_cycle_linear(*args)
    with pytest.raises(ConfigError):
        BetaSchedule(n_iter=args[0], n_cycle=args[3], ratio=args[4])
