r"""KL (β) annealing schedules.

:func:`frange_cycle_linear` is the cyclical schedule of Fu et al. (2019): ``n_iter``
iterations split into ``n_cycle`` periods; in each, β rises linearly from ``start``
to ``stop`` over the first ``ratio`` of the period, then holds at ``stop``.
Monotonic annealing is ``n_cycle = 1``. With a period of ``M`` and ``ratio = 0.5``
it equals Liu & Wang (2025) Eq. 12, :math:`\beta_t = 2r/M` for :math:`r < M/2` and 1 after,
:math:`r = t \bmod M` (:func:`eq12_beta`).

Liu & Wang's settings (Appendix G.1): cyclical = 5 cycles of ``M = 10`` blocks
(``n_iter = 50``), monotonic = one ramp over the same 50 blocks; β = 1 afterwards.

References:
    Fu et al., *Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing*, NAACL 2019.
    Liu & Wang, Liu & Wang (2025), Eq. 12 and Appendix G.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyrovae.errors import ConfigError

__all__ = ["frange_cycle_linear", "eq12_beta", "BetaSchedule", "monotonic", "cyclical"]


def frange_cycle_linear(n_iter: int, start: float = 0.0, stop: float = 1.0, n_cycle: int = 4, ratio: float = 0.5) -> np.ndarray:
    """β for each of ``n_iter`` iterations, exactly as Fu et al.'s reference function."""
    if n_iter < 1 or n_cycle < 1 or not 0 < ratio <= 1:
        raise ConfigError(f"need n_iter >= 1, n_cycle >= 1, 0 < ratio <= 1; got {n_iter}, {n_cycle}, {ratio}")
    values = np.ones(n_iter) * stop
    period = n_iter / n_cycle
    step = (stop - start) / (period * ratio)
    for c in range(n_cycle):
        v, i = start, 0
        while v <= stop and int(i + c * period) < n_iter:
            values[int(i + c * period)] = v
            v += step
            i += 1
    return values


def eq12_beta(t: int, period: int) -> float:
    """Liu & Wang (2025) Eq. 12: ``2r/M`` in the first half of each period, 1 in the second."""
    r = t % period
    return 2 * r / period if r < period / 2 else 1.0


@dataclass(frozen=True)
class BetaSchedule:
    """β per block ``t``: Fu's values for ``t < n_iter``, then ``stop`` for ever."""

    n_iter: int = 50
    n_cycle: int = 1
    ratio: float = 0.5
    start: float = 0.0
    stop: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_values", frange_cycle_linear(self.n_iter, self.start, self.stop, self.n_cycle, self.ratio))

    def __call__(self, t: int) -> float:
        return float(self._values[t]) if t < self.n_iter else float(self.stop)

    def finished(self, t: int) -> bool:
        return t >= self.n_iter


def monotonic(n_iter: int = 50) -> BetaSchedule:
    """One linear ramp over ``n_iter // 2`` blocks (β = min(2t/n_iter, 1))."""
    return BetaSchedule(n_iter=n_iter, n_cycle=1)


def cyclical(n_iter: int = 50, n_cycle: int = 5) -> BetaSchedule:
    """``n_cycle`` ramps of period ``n_iter / n_cycle`` (Liu & Wang 2025: 5 × 10 blocks)."""
    return BetaSchedule(n_iter=n_iter, n_cycle=n_cycle)
