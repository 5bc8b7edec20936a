r"""σ-calibration: the third step of the Calibrated Robust σ-CVAE (Liu & Wang 2025, Sec. 4.3).

At convergence of the ELBO, if the mean KL is below the tolerance ``C`` (the
constraint of Eq. 14 is violated), rescale

.. math::
    \sigma^{\mathrm{cal}} = |1 + \varphi|\,\sigma, \qquad \varphi \sim N(0, S),   \tag{Eq. 15}

with the variance ``S`` starting at 1 and growing by 1 after each calibration
(``variant="paper"``). The authors' public code instead draws
:math:`\varphi = 0.5\,N(0, 1)` and never grows ``S`` (``variant="code"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrovae.errors import ConfigError

__all__ = ["CalibrationRule", "VARIANTS"]

VARIANTS = ("paper", "code")


@dataclass
class CalibrationRule:
    """Decides, at convergence, between calibrating σ and stopping."""

    tolerance: float = 0.05
    variant: str = "paper"
    variance: float = 1.0  # S, the current variance of phi
    count: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise ConfigError(f"the calibration tolerance C must be >= 0, got {self.tolerance}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown calibration variant {self.variant!r}; known: {', '.join(VARIANTS)}")

    def should_calibrate(self, mean_kl: float) -> bool:
        """Eq. 14's constraint ``E_D KL >= C`` is violated."""
        return mean_kl < self.tolerance

    def draw_phi(self, generator: torch.Generator | None = None) -> float:
        device = None if generator is None else generator.device  # a replicate's stream may live on the GPU
        eps = float(torch.randn((), generator=generator, dtype=torch.float64, device=device))
        return math.sqrt(self.variance) * eps if self.variant == "paper" else 0.5 * eps

    def calibrate(self, sigma: float, generator: torch.Generator | None = None) -> tuple[float, float]:
        """Return ``(|1 + phi| * sigma, phi)`` and advance ``S`` (paper variant)."""
        phi = self.draw_phi(generator)
        self.count += 1
        if self.variant == "paper":
            self.variance += 1.0
        return abs(1.0 + phi) * sigma, phi

    def state_dict(self) -> dict:
        return {"variance": self.variance, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.variance = float(state["variance"])
        self.count = int(state["count"])
