r"""The Lagging schedule of Yacoby, Pan & Doshi-Velez (2020), App. E, as a block-loop plug-in.

App. E describes its Lagging Inference Networks baseline as a fixed schedule, not He et al.'s
(2019) aggressive phase (that one is :mod:`pyrovae.inference.lagging`): "R here means we divide the
total number of epochs into R equal segments. In each we train the inference network alone and then
[train] the inference and generative networks jointly." The total training length is the engine's
``max_steps``; segment ``k`` covers steps ``[⌊k·N/R⌋, ⌊(k+1)·N/R⌋)``, and its first
``encoder_fraction`` of steps (rounded) update the encoder alone.

Where the paper is silent we choose: half of each segment encoder-only (``encoder_fraction = 0.5``);
one Adam for the whole run — the engine's joint optimiser — whose encoder moments carry across the
phases, the decoder and σ simply receiving no gradient (``requires_grad`` off, so Adam skips them and
their moments stay as they were) in the encoder-only steps. The run trains for its whole length (the
schedule *is* the training length), never stopping at convergence.

A checkpoint resumes only with the same R, fraction and ``max_steps`` (a raised cap would move every
segment boundary). The phase depends on the step counter alone, which every replicate of a batch shares: replicates with
the same schedule train as one batch, and no extra optimiser or state is needed for checkpoints.

References:
    Yacoby, Pan & Doshi-Velez, *Characterizing and Avoiding Problematic Global Optima of Variational
    Autoencoders* (2022), App. E (hyper-parameter search: R ∈ {40, 50, 60, 70} on LinearJTEx, ...).
    He, Spokoyny, Neubig & Berg-Kirkpatrick, *Lagging Inference Networks and Posterior Collapse in
    Variational Autoencoders*, ICLR 2019.
"""

from __future__ import annotations

import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import Algorithm
from pyrovae.validation import integer_at_least, real

__all__ = ["SegmentedLagging", "segment_phase"]


def segment_phase(step: int, total: int, segments: int, encoder_fraction: float = 0.5) -> tuple[int, str]:
    """``(segment, phase)`` of gradient step ``step`` (0-based) in a run of ``total`` steps split into
    ``segments`` equal segments: phase ``"encoder"`` in the first ``round(encoder_fraction · length)``
    steps of its segment, ``"joint"`` after. Steps at or beyond ``total`` belong to the last segment."""
    segment = min(((step + 1) * segments - 1) // total, segments - 1)  # the k with ⌊kN/R⌋ <= step < ⌊(k+1)N/R⌋
    start, end = segment * total // segments, (segment + 1) * total // segments
    encoder_steps = int(round(encoder_fraction * (end - start)))
    return segment, "encoder" if step - start < encoder_steps else "joint"


class SegmentedLagging(Algorithm):
    """App. E's Lagging baseline: R segments, each the encoder alone and then encoder and decoder jointly."""

    name = "lagging-segments"
    noise = "any"  # fixed, tied or learned σ: a learned one is frozen with the decoder in encoder-only steps

    def __init__(self, segments: int = 10, encoder_fraction: float = 0.5):
        self.segments = integer_at_least("the number of Lagging segments R", segments)
        self.encoder_fraction = real("the encoder-only fraction of a segment", encoder_fraction, 0.0)
        if self.encoder_fraction > 1:
            raise ConfigError(f"the encoder-only fraction of a segment must lie in [0, 1], got {encoder_fraction!r}")

    def may_stop(self, block: int) -> bool:
        return False  # the schedule is the training length: the run ends at max_steps

    def setup(self, trainer) -> None:
        total = self.total = trainer.settings.max_steps
        if total < self.segments:
            raise ConfigError(f"{self.segments} Lagging segments need at least as many steps; max_steps = {total}")
        for r in trainer.active:
            other = trainer.algorithms[r]
            if (getattr(other, "segments", None), getattr(other, "encoder_fraction", None)) != (
                    self.segments, self.encoder_fraction):
                raise ConfigError("the replicates of one batch must share the Lagging schedule (R and the encoder "
                                  "fraction): the phase is the batch's step counter")

    def run_block(self, trainer, beta) -> list[float]:
        """The block's steps, each in its segment's phase: in an encoder-only step the decoder's and the
        noise's stacked parameters do not require a gradient, so the engine's Adam leaves them as they are."""
        frozen = [p for part in ("decoder", "noise") for p in trainer.parameters(part) if p.requires_grad]
        losses = []
        try:
            for _ in range(trainer.block_steps()):
                _, phase = segment_phase(trainer.state.step, trainer.settings.max_steps, self.segments,
                                         self.encoder_fraction)
                for p in frozen:
                    p.requires_grad_(phase == "joint")
                losses.append(trainer.step(*trainer.batch(), beta))
                trainer.state.step += 1
                if not bool(torch.isfinite(losses[-1]).any()):
                    break
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return losses

    def state_dict(self) -> dict:
        return {"segments": self.segments, "encoder_fraction": self.encoder_fraction, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint resumes only under its own schedule: the segments are fractions of ``max_steps``, so a
        raised cap would move every boundary (the trainer calls :meth:`setup` before this)."""
        saved = (int(state["segments"]), float(state["encoder_fraction"]), int(state["total"]))
        if saved != (self.segments, self.encoder_fraction, self.total):
            raise ConfigError(f"this checkpoint was trained with {saved[0]} Lagging segments over {saved[2]} steps "
                              f"(encoder fraction {saved[1]}); resume it with the same schedule and max_steps")

