r"""Training algorithms as plug-ins to the one block loop of :mod:`pyrovae.inference.trainer`.

Every algorithm trains in blocks of ``K`` gradient steps on θ, φ (and σ when it is
learned). After each block the trainer evaluates the full data with one
reparameterised ``z`` per point and hands the block's statistics to the algorithm,
which may update σ, calibrate it, or stop. Convergence (Liu & Wang 2025, Sec. 5): the mean
per-sample training loss changed by at most ``tol`` since the previous block.

========================  =============  ==========================================
name                      σ              after each block
========================  =============  ==========================================
``joint``                 learned       stop at convergence (θ, φ and σ by joint SVI)
``analytic``              analytic      σ² ← mean squared residual (Eq. 10); stop at convergence
``calibrated``            analytic      as ``analytic``; at convergence calibrate (Eq. 15) if KL < C, else stop
                                         (``variant="robust"``: our robust variant, :mod:`.robust_calibration`)
``monotonic``             analytic      as ``analytic`` with β from one ramp (Eq. 12, App. G.1)
``cyclical``              analytic      as ``analytic`` with β from 5 cycles (Eq. 12, App. G.1)
``fixed``                 fixed         stop at convergence
``lagging``               any           aggressive encoder steps until I(x; z) stops rising (He et al. 2019)
``lagging-segments``      any           R segments: encoder alone, then jointly (Yacoby, Pan & Doshi-Velez (2020), App. E)
========================  =============  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.calibration import CalibrationRule
from pyrovae.inference.schedules import BetaSchedule
from pyrovae.models.cvae import SigmaCVAE

__all__ = [
    "BlockStats",
    "Decision",
    "Algorithm",
    "JointSVI",
    "PlainSVI",
    "AnalyticSigma",
    "CalibratedSigma",
    "AnnealedSigma",
    "FixedSigma",
    "ReplaySigma",
]


@dataclass
class BlockStats:
    """What the trainer measured at the end of block ``block``."""

    block: int
    loss: float  # mean per-sample training objective at the block's last step
    recon: float  # mean -log p(y | x, z), one z ~ q per point, full data
    kl: float  # mean analytic KL[q(z|x,y) || p(z)]
    mse: float  # mean ||y - mu(x, z)||^2 / q, the analytic sigma^2 of Eq. 10
    converged: bool
    rng: torch.Generator | None = None  # the replicate's own stream, for the algorithm's random moves


@dataclass
class Decision:
    stop: bool = False
    event: str = ""
    phi: float = math.nan
    status: str = "converged"  # the run's final status when ``stop``: converged | collapsed


class Algorithm:
    """Base class: joint training with nothing done between blocks."""

    name = "base"
    noise = "learned"  # the observation model this algorithm needs

    def beta(self, block: int) -> float:
        return 1.0

    def may_stop(self, block: int) -> bool:
        return True

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        return Decision(stop=stats.converged and self.may_stop(stats.block), event="converged" if stats.converged else "")

    def check_model(self, model: SigmaCVAE) -> None:
        kind = type(model.noise).__name__
        if self.noise == "learned" and not model.noise.learned:
            raise ConfigError(f"algorithm {self.name!r} learns sigma by gradient; the model's noise is {kind}")
        if self.noise == "calibrated" and not model.noise.settable:
            raise ConfigError(f"algorithm {self.name!r} sets sigma analytically; the model's noise is {kind}")
        if self.noise == "fixed" and model.noise.learned:
            raise ConfigError(f"algorithm {self.name!r} keeps sigma fixed; the model's noise is {kind}")

    def setup(self, trainer) -> None:
        """Called by the trainer for every replicate still training whenever the batch changes (start, a replicate
        leaving, resume): e.g. to take the batch's extra optimisers from ``trainer.plugin_optimizer``."""

    def at_step_cap(self, model: SigmaCVAE, generator: torch.Generator) -> None:
        """Called once when ``max_steps`` stops this replicate, before its final metrics (draws from
        ``generator``, a copy of the replicate's stream); nothing by default."""

    def report(self) -> dict[str, Any]:
        """What the algorithm did at the end of a run, added to the run's final metrics; nothing by default."""
        return {}

    def run_block(self, trainer, beta: float) -> list[float]:
        """The block's gradient steps: ``trainer.block_steps()`` joint steps by default; stops early
        when every replicate's loss is NaN. Returns the per-step losses (one ``(R,)`` tensor per
        step) and advances ``trainer.state.step``."""
        losses = []
        for _ in range(trainer.block_steps()):
            losses.append(trainer.step(*trainer.batch(), beta))
            trainer.state.step += 1
            if not bool(torch.isfinite(losses[-1]).any()):
                break
        return losses

    def state_dict(self) -> dict:
        """JSON-able state for checkpoints."""
        return {}

    def check_state(self, state: dict) -> None:
        """Refuse (:class:`~pyrovae.errors.DataError`) a checkpointed :meth:`state_dict` that this version cannot
        resume; the trainer asks before it loads anything. Every state is accepted by default."""

    def load_state_dict(self, state: dict) -> None:
        pass

    def tensor_state_dict(self) -> dict:
        """Tensor state (e.g. optimiser state dicts) for checkpoints; loaded with ``weights_only=True``."""
        return {}

    def load_tensor_state_dict(self, state: dict) -> None:
        pass


class PlainSVI(Algorithm):
    """SVI steps and nothing between blocks, whatever the observation model (e.g. fitting the encoder
    to a fixed decoder with ``TrainSettings(trainable=("encoder",))``); stops at convergence."""

    name = "svi"
    noise = "any"


class JointSVI(Algorithm):
    """θ, φ and σ by joint stochastic gradient steps. Not Liu & Wang's (2025) "Vanilla", which is the
    analytic σ without calibration (``analytic``)."""

    name = "joint"
    noise = "learned"


class FixedSigma(Algorithm):
    """A CVAE whose σ never changes (equivalent to a fixed β; Liu & Wang (2025) App. H)."""

    name = "fixed"
    noise = "fixed"


class AnalyticSigma(Algorithm):
    r"""Block coordinate descent of Rybkin et al. (2021): ``K`` steps on θ, φ, then
    :math:`\sigma^2 = \frac{1}{nq}\sum_i \|y_i - \mu_\theta(x_i, z_i)\|^2` (Liu & Wang 2025 Eq. 10)."""

    name = "analytic"
    noise = "calibrated"

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        model.noise.set_sigma(math.sqrt(stats.mse))
        return super().after_block(model, stats)


class CalibratedSigma(AnalyticSigma):
    """Calibrated Robust σ-CVAE (Liu & Wang 2025, Algorithm 1): analytic σ, then at
    convergence calibrate σ by Eq. 15 while the mean KL is below ``C``."""

    name = "calibrated"

    def __init__(self, tolerance: float = 0.05, variant: str = "paper"):
        self.rule = CalibrationRule(tolerance=tolerance, variant=variant)

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        model.noise.set_sigma(math.sqrt(stats.mse))
        if not stats.converged:
            return Decision()
        if not self.rule.should_calibrate(stats.kl):
            return Decision(stop=True, event="converged")
        sigma, phi = self.rule.calibrate(model.sigma, generator=stats.rng)
        model.noise.set_sigma(sigma)
        return Decision(event="calibrate", phi=phi)

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)


class AnnealedSigma(AnalyticSigma):
    """KL annealing with a learned (analytic) σ: β from a schedule per block; the run may
    only stop once the schedule has ended (β = 1)."""

    def __init__(self, schedule: BetaSchedule, name: str = "annealed"):
        self.schedule = schedule
        self.name = name

    def beta(self, block: int) -> float:
        return self.schedule(block)

    def may_stop(self, block: int) -> bool:
        return self.schedule.finished(block)



class ReplaySigma(Algorithm):
    r"""An F-VAE whose σ follows a recorded per-block schedule (Berger & Sebag, Berger & Sebag (2020), App. A.2).

    Needs a :class:`~pyrovae.models.noise.ScheduledNoise` (built from an LS-VAE history with
    ``ScheduledNoise.from_history``). σ is fixed during each block; after block ``b`` it is set
    to ``schedule[b + 1]``, so block ``b`` trains with the recorded run's σ at the start of its
    own block ``b`` and this run's history repeats the recorded σ column. Stops at convergence
    only once the schedule has been played to its end.
    """

    name = "replay"
    noise = "scheduled"

    def check_model(self, model: SigmaCVAE) -> None:
        if not callable(getattr(model.noise, "at_block", None)):
            raise ConfigError(f"algorithm 'replay' needs a ScheduledNoise; the model's noise is {type(model.noise).__name__}")

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        model.noise.at_block(stats.block + 1)
        played = stats.block + 2 >= len(model.noise)  # the schedule is [sigma0, one value per recorded block]
        return Decision(stop=stats.converged and played, event="converged" if stats.converged else "")
