r"""A robust variant of σ-calibration (ours, not the paper's): ``--calibration robust``.

Liu & Wang (2025), Algorithm 1, calibrates σ by Eq. 15, :math:`\sigma \leftarrow |1 + \varphi|\sigma`
with :math:`\varphi \sim N(0, S)`, whenever the loss has converged (:math:`|\Delta \mathcal L|
\le 0.001`) with the mean KL below an absolute tolerance ``C`` (Eq. 14). Across noise levels
that rule stops while σ is still falling, accepts partially collapsed optima whose KL exceeds
``C``, draws ever wilder φ as ``S`` grows, and may calibrate forever. This variant keeps the
analytic σ of Eq. 10 between calibrations and changes the three decisions:

* **Plateau** (:func:`plateau`): over the last ``window`` blocks, the least-squares drift of the
  loss per output dimension is at most ``rel_tol``, the drift of :math:`\log\sigma` at most
  ``rel_tol`` beyond its own noise, and σ does not oscillate. These are relative changes (at the
  analytic σ the loss per point is :math:`q\log\sigma` plus terms free of the units of y), so
  the same test serves every noise level.
* **Calibration as a probe** (:meth:`RobustCalibratedSigma.after_block`): at every plateau σ is
  shrunk, :math:`\sigma \leftarrow \rho^{k}\sigma` with ``k`` the number of failed probes in a row
  plus one (a deterministic, bounded version of Eq. 15's :math:`|1+\varphi| < 1`), and held there
  for ``hold`` blocks so the encoder can start to use z before the analytic σ of Eq. 10 resumes.
  The next plateau is accepted when its loss (−ELBO per point and output dimension, averaged
  over the window) beats the best plateau so far by more than ``min_gain`` nats — at equal KL,
  a 2.5 % smaller σ: no absolute KL level is involved. (A smaller gain is the slow drift of a
  healthy fit; 0.005 nats made a healthy run probe once more, docs/RESULTS.md.)
* **Stop** (:meth:`RobustCalibratedSigma.after_block`): a probe that does not improve the ELBO
  ends the run (a first plateau: two such probes, below) — ``converged`` when the latent is in
  use, ``collapsed`` when the mean KL is still below ``collapse_kl`` nats (the posterior equals
  the prior) after ``budget`` failed probes in a row. So every run ends converged, collapsed, max_steps or nan. A run whose first plateau no
  probe has improved needs ``first_probes`` failed probes in a row (each deeper, ρ then ρ²) before
  it is accepted: one shallow probe held for ``hold`` blocks is weak evidence. Over two-moon cells at
  τ = 0.1–0.5 the runs that one failed probe had ended (9 of 150) all reached a larger KL with the
  second probe, among them the early stoppers (600–700 steps; τ = 0.3: KL 0.50 → 0.90) and the one
  miss at τ = 0.5, n = 5,000 (8.1 % → 4.5 %), for 12–50 more steps at the median (docs/RESULTS.md).
* **Polish** (:meth:`RobustCalibratedSigma.polish`): when the run ends converged, θ, φ and σ take a few steps on the importance-weighted bound with ``polish_particles``
  draws per point (:mod:`~pyrovae.inference.iwae_polish`), until :func:`plateau` over
  ``polish_window`` blocks or ``polish_steps``. The ELBO's decoder has a maximum-likelihood σ
  above the truth at high noise (two-moon τ = 0.5: ≈ 10 %); the polish moves the decoder.
  A collapsed run is not polished: with q = p(z) and a decoder that ignores z every weight is
  the same, and the bound is the ELBO. Nor is a run the step cap stops: ``max_steps`` is the user's
  budget, and polishing a model that has not converged trains it on another objective (a 4-step run
  of the contract tests went from −ELBO 2.25 to 23.8 per point, σ 0.70 → 0.09, in 400 polish
  steps). ``polish_particles = 0`` skips it. The polish starts from the importance-weighted σ of
  the ELBO's decoder (see *Final σ*), so how far it moves σ measures the decoder's own bias; when a
  stage moves :math:`\log\sigma` by more than ``polish_moved``, another stage follows with twice the
  draws, up to ``polish_max_particles`` (τ = 0.5: the K = 32 stage moves σ by 4.8–10 %, and K = 64
  brings 30 of 30 runs within 5 % of τ where K = 32 alone brought 27; τ = 0.1: it moves σ by at most
  0.6 %, so no second stage runs and the cost there is unchanged; docs/RESULTS.md). On more than
  ``polish_points`` points the polish trains on a fixed random subset of that many (its starting σ
  is the subset's importance-weighted σ, so a stage's move is the decoder's, not the subset's
  sampling error); the final σ is then taken on all points. Two-moon at n = 5,000: a third of the
  cost, and at τ = 0.5 every run still within 5 % (docs/RESULTS.md). With ``refine_particles = 0``
  there is no importance-weighted σ: the polish starts from Eq. 10's σ and the run ends at the σ the
  polish fitted (on the subset, if there is one).
* **Final σ** (:meth:`RobustCalibratedSigma.refine`): when the variant ends the run (or the step cap
  does), σ is set to
  the importance-weighted maximum-likelihood σ of the trained decoder
  (:func:`~pyrovae.inference.sigma_refinement.importance_sigma`, ``refine_particles`` draws per
  point from the encoder) instead of Eq. 10's expectation under q, which also carries q's
  mismatch with the posterior. ``refine_particles = 0`` ends at Eq. 10's σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import AnalyticSigma, BlockStats, Decision
from pyrovae.inference.calibration import VARIANTS
from pyrovae.inference.iwae_polish import iwae_polish
from pyrovae.inference.sigma_refinement import importance_sigma
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.validation import integer_at_least, real

__all__ = ["RobustSettings", "RobustCalibratedSigma", "plateau", "CALIBRATIONS"]

CALIBRATIONS = VARIANTS + ("robust",)  # every value of ``--calibration``


@dataclass
class RobustSettings:
    """Knobs of the robust variant (defaults measured in docs/RESULTS.md, "Calibration robustness")."""

    window: int = 8  # blocks over which the plateau test looks
    rel_tol: float = 0.005  # largest relative drift (and scatter) of σ and of the loss per output
    shrink: float = 0.5  # ρ: a probe sets σ to ρ^k σ
    hold: int = 4  # blocks σ is held after a probe before the analytic σ resumes
    min_gain: float = 0.025  # nats per output dimension a probe's plateau must gain to be accepted
    budget: int = 4  # failed probes in a row before a collapsed run stops
    first_probes: int = 2  # failed probes in a row before a run accepts a plateau no probe has improved
    collapse_kl: float = 0.01  # mean KL (nats) below which the latent is unused
    refine_particles: int = 256  # draws per point for the final importance-weighted σ (0: Eq. 10's σ)
    polish_particles: int = 32  # draws per point of the importance-weighted polish (0: no polish)
    polish_steps: int = 400  # most gradient steps of the polish
    polish_window: int = 3  # blocks over which the polish's plateau test looks
    polish_moved: float = 0.02  # a polish stage that moves log σ by more is followed by one with twice the draws
    polish_max_particles: int = 64  # the most draws per point of a polish stage
    polish_points: int = 1000  # the polish trains on a fixed random subset of at most this many points (0: all)

    def __post_init__(self) -> None:
        for name, minimum in (("window", 1), ("budget", 1), ("first_probes", 1), ("hold", 0), ("refine_particles", 0),
                              ("polish_particles", 0), ("polish_steps", 1), ("polish_window", 1),
                              ("polish_max_particles", 0), ("polish_points", 0)):
            setattr(self, name, integer_at_least(f"robust calibration: {name}", getattr(self, name), minimum))
        if self.polish_particles and self.polish_max_particles < self.polish_particles:
            raise ConfigError(f"robust calibration: polish_max_particles ({self.polish_max_particles}) must be at least "
                              f"polish_particles ({self.polish_particles})")
        if not (0 < self.shrink < 1):
            raise ConfigError(f"robust calibration: shrink must lie in (0, 1), got {self.shrink}")
        for name in ("rel_tol", "min_gain", "collapse_kl", "polish_moved"):
            real(f"robust calibration: {name}", getattr(self, name), 0.0)
        for name in ("window", "polish_window"):
            if getattr(self, name) < 3:
                raise ConfigError(f"robust calibration: {name} must be >= 3 blocks to fit a trend, got {getattr(self, name)}")


def _trend(values: list[float]) -> tuple[float, float, float]:
    """Least-squares drift over the whole window, its standard error, and the residual scatter."""
    v = torch.tensor(values, dtype=torch.float64)
    t = torch.arange(len(v), dtype=torch.float64)
    t = t - t.mean()
    slope = float((t * (v - v.mean())).sum() / (t * t).sum())
    resid = v - v.mean() - slope * t
    scatter = float(resid.pow(2).mean().sqrt())
    span = len(v) - 1
    stderr = scatter * math.sqrt(len(v) / max(len(v) - 2, 1) / float((t * t).sum())) * span
    return abs(slope) * span, stderr, scatter


def plateau(log_sigma: list[float], loss_per_output: list[float], window: int, rel_tol: float) -> bool:
    r"""True when the last ``window`` blocks are flat.

    * the fitted drift of the loss per output dimension over the window is at most ``rel_tol``
      (the block-mean loss is smooth; at the analytic σ it moves as :math:`\log\sigma`);
    * the fitted drift of :math:`\log\sigma` is at most ``rel_tol`` plus two standard errors
      (σ is evaluated with one z per point, so it scatters; only a drift beyond its noise counts);
    * :math:`\log\sigma` scatters about its trend by at most ``4 rel_tol`` (an oscillating σ
      is not a plateau).
    """
    if len(log_sigma) < window:
        return False
    drift_sigma, stderr, scatter = _trend(log_sigma[-window:])
    drift_loss, _, _ = _trend(loss_per_output[-window:])
    return drift_loss <= rel_tol and drift_sigma <= rel_tol + 2 * stderr and scatter <= 4 * rel_tol


@dataclass
class _State:
    log_sigma: list[float] = field(default_factory=list)  # since the last probe ended its hold
    loss: list[float] = field(default_factory=list)  # per output dimension, same blocks
    best: float = math.inf  # lowest plateau loss per output dimension so far
    failures: int = 0  # probes in a row whose plateau did not beat ``best``
    gains: int = 0  # probes whose plateau beat ``best``
    hold_left: int = 0
    count: int = 0  # probes (calibrations) so far
    polish_steps: int = 0  # gradient steps the polish took at the end of the run (all stages)
    polish_status: str = "none"  # how the polish ended: none (not run) | stopped | max_steps | nan
    polish_particles: int = 0  # draws per point of the polish's last stage (0: no polish)


class RobustCalibratedSigma(AnalyticSigma):
    """Robust calibrated σ-CVAE (ours; see the module docstring): analytic σ (Liu & Wang 2025,
    Eq. 10), a scale-free plateau test, calibration (Eq. 15 with a deterministic shrink) as a probe
    judged by the ELBO gain, a bounded number of failed probes before the status ``collapsed``, a
    short polish on the importance-weighted bound, and an importance-weighted final σ."""

    name = "calibrated"

    def __init__(self, settings: RobustSettings | None = None):
        self.settings = settings or RobustSettings()
        self.state = _State()
        self.data: tuple[torch.Tensor, torch.Tensor] | None = None  # (condition, observed) for the final σ, from setup
        self.lr: float | None = None  # the run's learning rate and block length, from setup
        self.block: int | None = None

    def setup(self, trainer) -> None:
        """Keep this replicate's training data (``condition``, ``observed``), the learning rate and the block length
        for :meth:`polish` and :meth:`refine`."""
        data = trainer.data_of(next(r for r, alg in enumerate(trainer.algorithms) if alg is self))
        self.data = (data.condition, data.observed)
        self.lr, self.block = trainer.settings.lr, trainer.settings.K

    def at_step_cap(self, model: SigmaCVAE, generator: torch.Generator) -> None:
        """A run the step cap stops ends at the importance-weighted σ too, unpolished (module docstring)."""
        self.refine(model, generator)

    def polish(self, model: SigmaCVAE, rng: torch.Generator | None) -> None:
        """The importance-weighted polish (:func:`~pyrovae.inference.iwae_polish.iwae_polish`, draws from
        ``rng``) with the run's learning rate and block length, each stage stopped by :func:`plateau` over
        ``polish_window`` blocks or ``polish_steps``, on at most ``polish_points`` of the points (a
        fixed random subset). It starts from the importance-weighted σ of those points (from the σ it
        has with ``refine_particles = 0``); a stage that
        moves log σ by more than ``polish_moved`` is followed by one with twice the draws while they
        stay within ``polish_max_particles`` (module docstring). Nothing happens with
        ``polish_particles = 0`` or before :meth:`setup`."""
        cfg, s = self.settings, self.state
        if not cfg.polish_particles or self.data is None:
            return
        condition, observed = self.data
        if cfg.polish_points and len(observed) > cfg.polish_points:
            rows = torch.randperm(len(observed), generator=rng, device=observed.device)[:cfg.polish_points]
            condition, observed = condition[rows], observed[rows]
        self._set_importance_sigma(model, condition, observed, rng)
        particles = cfg.polish_particles
        while True:
            start = model.sigma
            result = iwae_polish(model, condition, observed, particles=particles, max_steps=cfg.polish_steps,
                                 block=self.block, lr=self.lr, generator=rng,
                                 stop=lambda log_sigma, loss: plateau(log_sigma, loss, cfg.polish_window, cfg.rel_tol))
            s.polish_steps, s.polish_status, s.polish_particles = s.polish_steps + result.steps, result.status, particles
            moved = abs(math.log(result.sigma / start))
            if result.status == "nan" or moved <= cfg.polish_moved or 2 * particles > cfg.polish_max_particles:
                return
            particles *= 2

    def report(self) -> dict:
        """The polish in the run's metrics: ``polish_steps`` (all stages), ``polish_status`` of its last
        stage (``none`` when it did not run: off, collapsed, or stopped by the step cap) and
        ``polish_particles``, the draws of its last stage."""
        return {"polish_steps": self.state.polish_steps, "polish_status": self.state.polish_status,
                "polish_particles": self.state.polish_particles}

    def refine(self, model: SigmaCVAE, rng: torch.Generator | None) -> None:
        """Set σ to the importance-weighted maximum-likelihood σ of the trained decoder (ours,
        :mod:`pyrovae.inference.sigma_refinement`), with draws from ``rng``. Nothing happens with
        ``refine_particles = 0``, before :meth:`setup` has given the data, or if the estimate is
        not a positive number (σ stays at Eq. 10's value)."""
        if self.data is not None:
            self._set_importance_sigma(model, *self.data, rng)

    def _set_importance_sigma(self, model: SigmaCVAE, condition: torch.Tensor, observed: torch.Tensor,
                              rng: torch.Generator | None) -> None:
        """σ ← the importance-weighted σ of ``model`` on these points (``refine_particles`` draws each)."""
        if not self.settings.refine_particles:
            return
        sigma = importance_sigma(model, condition, observed, particles=self.settings.refine_particles, generator=rng).sigma
        if math.isfinite(sigma) and sigma > 0:
            model.noise.set_sigma(sigma)

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        s, cfg = self.state, self.settings
        if s.hold_left > 0:  # σ stays at the probe's value: the encoder gets time to use z
            s.hold_left -= 1
            return Decision()
        model.noise.set_sigma(math.sqrt(stats.mse))
        s.log_sigma.append(0.5 * math.log(stats.mse))
        s.loss.append(stats.loss / model.observed_dim)
        if not plateau(s.log_sigma, s.loss, cfg.window, cfg.rel_tol):
            return Decision()
        level = sum(s.loss[-cfg.window:]) / cfg.window
        if level < s.best - cfg.min_gain:
            s.gains += s.best < math.inf  # the first plateau sets ``best``; later ones beat it after a probe
            s.best, s.failures = level, 0
        else:
            s.failures += 1
            collapsed = stats.kl < cfg.collapse_kl
            if not collapsed and (s.gains or s.failures >= cfg.first_probes):
                self.polish(model, stats.rng)
                self.refine(model, stats.rng)
                return Decision(stop=True, event="converged")
            if collapsed and s.failures >= cfg.budget:
                self.refine(model, stats.rng)
                return Decision(stop=True, event="collapsed", status="collapsed")
        sigma = cfg.shrink ** (s.failures + 1) * model.sigma
        model.noise.set_sigma(sigma)
        s.count += 1
        s.hold_left = cfg.hold
        s.log_sigma.clear()
        s.loss.clear()
        return Decision(event="calibrate", phi=sigma / math.sqrt(stats.mse) - 1.0)

    def state_dict(self) -> dict:
        return dict(vars(self.state))

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`, after a JSON checkpoint (which stores ``best = inf`` as null)."""
        values = {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
        if values.get("best") is None:
            values["best"] = math.inf
        self.state = _State(**values)
