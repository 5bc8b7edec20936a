r"""Lagging Inference Networks (He et al., ICLR 2019) as a block-loop plug-in.

While *aggressive*, every training step first optimises the encoder alone — up to
``max_inner`` encoder-only steps, the first on the current batch and the rest on fresh
random batches; every ``window`` steps (R) the average loss of the window is compared with the
previous window's and the inner loop stops as soon as it no longer falls by more than the
threshold ``threshold`` (T, nats per point; T = 0, the default, is the authors' public code:
stop when it no longer falls at all) — and then takes
one decoder-only step (decoder and σ) on the batch. Encoder and decoder have their own Adam
optimisers, which after aggressive mode step together (their moments carry on), and gradients are
clipped to norm 5, as the authors' code (``text.py``) does — here each step's norm is that of the
parameters it moves (theirs clips the whole model's gradient in every step).

Replicates train as one batch: each has its own aggressive mode, and its own inner loop of its own
length; a replicate whose loop has ended, or that is past aggressive mode, sits the other replicates'
steps out (:meth:`~pyrovae.inference.engine.ReplicateEngine.step` with a mask: its weights, Adam moments,
step counts and random stream stay as they were), so replicate r of a batch is the run alone.

After each block the aggregate-posterior mutual information :math:`I_q(x; z)`
(:func:`pyrovae.metrics.information.aggregate_posterior_mutual_information`) is measured
on the validation data (the training data when none is given). Aggressive mode ends the
first time it drops below its best value (their text model; ``patience`` > 1 gives their
image model's "``patience`` blocks below the best"); from then on training is ordinary
joint steps (both Adams). The run may stop at convergence only after aggressive mode has ended.

References:
    He, Spokoyny, Neubig & Berg-Kirkpatrick, *Lagging Inference Networks and Posterior
    Collapse in Variational Autoencoders*, ICLR 2019, Algorithm 1.
    Yacoby, Pan & Doshi-Velez (both papers of Yacoby, Pan & Doshi-Velez (2021, 2020)) use it as a baseline; Yacoby, Pan & Doshi-Velez's App. D grid-searches
    "T, the threshold for determining whether the inference network objective has converged" over
    {0.05, 0.1} and "R, the number of training iterations for which the loss is averaged" over {5, 10}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.algorithms import Algorithm, BlockStats, Decision
from pyrovae.metrics.information import aggregate_posterior_mutual_information
from pyrovae.models.cvae import SigmaCVAE

__all__ = ["LaggingInference", "decoder_or_joint_step", "encoder_phase"]


def encoder_phase(step: Callable[[int, list[bool]], torch.Tensor], running: Sequence[bool], max_inner: int,
                  window: int, threshold: float = 0.0) -> list[int]:
    """He et al. (2019)'s inner loop (Alg. 1, lines 4-8) for the replicates where ``running`` is True:
    ``step(k, running)`` takes one encoder-only update of the replicates still running (``k = 0`` on the
    current batch, later ones on fresh batches) and returns the ``(R,)`` losses (the others' entries are
    ignored). Each replicate takes at most ``max_inner`` steps; after every ``window`` of its steps it compares
    the window's mean loss with its previous window's and stops as soon as it has fallen by ``threshold``
    (Yacoby, Pan & Doshi-Velez 2021 App. D's T) or less, or at a non-finite loss. Returns the number of steps
    each replicate took."""
    running = [bool(r) for r in running]
    taken = [0] * len(running)
    previous = [math.inf] * len(running)
    windows: list[list[float]] = [[] for _ in running]
    for k in range(int(max_inner)):
        live = [r for r, on in enumerate(running) if on]
        if not live:
            break
        losses = step(k, list(running)).tolist()
        for r in live:
            taken[r] += 1
            if not math.isfinite(losses[r]):
                running[r] = False
                continue
            windows[r].append(losses[r])
            if len(windows[r]) == window:
                current = sum(windows[r]) / window
                if current >= previous[r] - threshold:  # converged: fell by T or less
                    running[r] = False
                else:
                    previous[r], windows[r] = current, []
    return taken


def decoder_or_joint_step(step: Callable[[list[torch.optim.Optimizer], torch.Tensor | None], torch.Tensor],
                          aggressive: torch.Tensor, encoder_optim: torch.optim.Optimizer,
                          decoder_optim: torch.optim.Optimizer) -> torch.Tensor:
    """The step after the inner loops (He et al. 2019, Alg. 1): a decoder-only step for the replicates where
    ``aggressive`` ``(R,)`` is True, a joint step (both Adams) for the others — one masked pass each when the
    batch holds both. ``step(optimizers, mask)`` takes one step of the replicates in ``mask`` (None: all) and
    returns the ``(R,)`` losses; returns each replicate's loss of its own step."""
    both = [encoder_optim, decoder_optim]
    if not bool(aggressive.any()):
        return step(both, None)
    loss = step([decoder_optim], aggressive)
    if bool(aggressive.all()):
        return loss
    return torch.where(aggressive, loss, step(both, ~aggressive))


class LaggingInference(Algorithm):
    """Aggressive encoder updates until the mutual information stops rising, then joint SVI."""

    name = "lagging"
    noise = "any"  # fixed, learned scalar or per-output σ

    def __init__(self, max_inner: int = 100, window: int = 10, patience: int = 1, clip_norm: float = 5.0,
                 validation: Dataset | None = None, mi_points: int = 1000, threshold: float = 0.0):
        if max_inner < 1 or window < 1 or patience < 1 or not clip_norm > 0 or mi_points < 2:
            raise ConfigError("Lagging Inference needs max_inner, window, patience >= 1, clip_norm > 0, mi_points >= 2")
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"Lagging Inference's threshold T must be finite and >= 0, got {threshold!r}")
        self.max_inner, self.window, self.patience, self.clip_norm = max_inner, window, patience, clip_norm
        self.threshold = float(threshold)
        self.validation, self.mi_points = validation, mi_points
        self.aggressive = True
        self.best_mi = -math.inf
        self.below_best = 0
        self.last_mi = math.nan
        self.inner_steps = 0

    def _loop(self) -> tuple:
        return self.max_inner, self.window, self.threshold, self.clip_norm

    def setup(self, trainer) -> None:
        """The batch's two optimisers (shared by its replicates, kept by the engine) and this replicate's
        validation data."""
        for r in trainer.active:
            other = trainer.algorithms[r]
            if not isinstance(other, LaggingInference) or other._loop() != self._loop():
                raise ConfigError("the replicates of one batch must all train with Lagging Inference Networks and share "
                                  "its inner loop (max_inner, window, threshold, clip_norm)")
        self.encoder_optim = trainer.plugin_optimizer("lagging-encoder", trainer.parameters("encoder"))
        self.decoder_optim = trainer.plugin_optimizer("lagging-decoder",
                                                      trainer.parameters("decoder") + trainer.parameters("noise"))
        own = next(r for r in trainer.active if trainer.algorithms[r] is self)
        self.data = (self.validation or trainer.data_of(own)).to(trainer.data.observed.device)

    # -- the block ------------------------------------------------------------------
    def run_block(self, trainer, beta) -> list[torch.Tensor]:
        """The block's steps for every replicate of the batch: an aggressive one takes its encoder loop and
        then a decoder-only step, the others a joint step (both Adams), each on its own batch."""
        aggressive = torch.tensor([trainer.algorithms[r].aggressive for r in trainer.active],
                                  device=trainer.stack.device)
        losses = []
        for _ in range(trainer.block_steps()):
            condition, observed = trainer.batch()
            if bool(aggressive.any()):
                self._encoder_phase(trainer, condition, observed, beta, aggressive)
            loss = decoder_or_joint_step(
                lambda optimizers, mask: trainer.step(condition, observed, beta, optimizer=optimizers,
                                                      clip_norm=self.clip_norm, mask=mask),
                aggressive, self.encoder_optim, self.decoder_optim)
            losses.append(loss)
            trainer.state.step += 1
            if not bool(torch.isfinite(loss).any()):
                break
        return losses

    def _encoder_phase(self, trainer, condition: torch.Tensor, observed: torch.Tensor, beta,
                       aggressive: torch.Tensor) -> None:
        def step(k: int, running: list[bool]) -> torch.Tensor:
            mask = torch.tensor(running, device=aggressive.device)
            xb, yb = (condition, observed) if k == 0 else trainer.batch(mask)
            return trainer.step(xb, yb, beta, optimizer=self.encoder_optim, clip_norm=self.clip_norm, mask=mask)

        taken = encoder_phase(step, aggressive.tolist(), self.max_inner, self.window, self.threshold)
        for r, n in zip(trainer.active, taken):
            trainer.algorithms[r].inner_steps += n

    # -- between blocks -------------------------------------------------------------
    def mutual_information(self, model: SigmaCVAE, generator: torch.Generator | None = None) -> float:
        """:math:`I_q(x; z)` of the encoder on the validation data (``mi_points`` of them, drawn with
        ``generator``, the replicate's stream, when there are more), with fixed draws of z as the M2
        trainer's: it depends on the weights alone, not on torch's global generator, so a resumed run
        takes the aggressive-mode decisions the uninterrupted run takes."""
        data = self.data
        if len(data) > self.mi_points:
            idx = torch.randperm(len(data), generator=generator, device=data.observed.device)[: self.mi_points]
            condition, observed = data.condition[idx], data.observed[idx]
        else:
            condition, observed = data.condition, data.observed
        with torch.no_grad():
            loc, scale = model.encode(condition, observed)
            return float(aggregate_posterior_mutual_information(loc, scale, seed=0))

    def after_block(self, model: SigmaCVAE, stats: BlockStats) -> Decision:
        event = ""
        if self.aggressive:
            self.last_mi = self.mutual_information(model, stats.rng)
            if self.last_mi > self.best_mi:
                self.best_mi, self.below_best = self.last_mi, 0
            else:
                self.below_best += 1
                if self.below_best >= self.patience:
                    self.aggressive, event = False, "aggressive-off"
            if self.aggressive:
                return Decision()
            return Decision(event=event)
        return super().after_block(model, stats)

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"aggressive": self.aggressive, "best_mi": self.best_mi if math.isfinite(self.best_mi) else None,
                "below_best": self.below_best, "inner_steps": self.inner_steps, "optimisers": "engine"}

    def check_state(self, state: dict) -> None:
        if state.get("optimisers") != "engine":  # before: the two Adams were this plug-in's own tensor state
            raise DataError("this checkpoint was written by an older version of Lagging Inference Networks, whose "
                            "optimisers it cannot resume; train into a new directory")

    def load_state_dict(self, state: dict) -> None:
        self.aggressive = bool(state["aggressive"])
        self.best_mi = -math.inf if state["best_mi"] is None else float(state["best_mi"])
        self.below_best, self.inner_steps = int(state["below_best"]), int(state["inner_steps"])

