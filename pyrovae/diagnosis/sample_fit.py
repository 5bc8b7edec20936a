r"""Data against the model's samples: the smooth k-nearest-neighbour two-sample statistic.

Yacoby, Pan & Doshi-Velez (2021, App. D; 2020, App. E) judge a learned :math:`p_\theta(x)` by the
smooth kNN statistic between its samples and held data (:func:`pyrovae.metrics.two_sample.smooth_knn_statistic`,
Djolonga & Krause 2017, α = 1). Under "same distribution" it is roughly standard normal; large and
positive when the samples differ. Here: up to 500 data points against as many samples (a σ-CVAE
samples y at the same x, and the statistic compares the pairs (x, y)). Warning from 3, failure from
10 (ours: 3 is the one-sided 0.1 % point of the null; 10 a gap no sampling noise explains).

No remedy of its own: a poor fit is explained by the other findings (collapse, σ, mismatch); when
none fails, the run may simply be short.
"""

from __future__ import annotations

import torch

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding

__all__ = ["check_sample_fit", "model_samples"]

WARNING, FAILURE = 3.0, 10.0


def model_samples(ctx: RunContext, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` data points and ``m`` model samples as ``(points, samples)``: [x, y] pairs for a σ-CVAE
    (y drawn at the data's x), the modelled columns otherwise; seeded by the context."""
    torch.manual_seed(ctx.seed + 4)
    if ctx.kind == "m2":
        data = ctx.observed[:m]
        samples = ctx.model.sample(len(data))[0]
        return data, samples
    condition, observed = ctx.condition[:m], ctx.observed[:m]
    drawn = ctx.model.sample(condition)
    return torch.cat([condition, observed], 1), torch.cat([condition, drawn], 1)


def check_sample_fit(ctx: RunContext, points: int = 500) -> tuple[Finding, tuple[torch.Tensor, torch.Tensor]]:
    from pyrovae.metrics.two_sample import smooth_knn_statistic

    data, samples = model_samples(ctx, min(points, len(ctx.observed)))
    value = float(smooth_knn_statistic(data.double(), samples.double(), alpha=1.0).value)
    verdict = "failure" if value >= FAILURE else "warning" if value >= WARNING else "ok"
    summary = f"smooth kNN statistic between {len(data)} data points and as many model samples: {value:.3g}"
    remedy = None
    if verdict != "ok":
        summary += ": the samples are told apart from the data"
        if ctx.metrics.get("status") == "max_steps":
            remedy = remedies.train_longer(ctx.cfg)
    return Finding("data vs samples", verdict, value, f"warning ≥ {WARNING:g}, failure ≥ {FAILURE:g} (≈ N(0, 1) under "
                   "the null)", "Yacoby, Pan & Doshi-Velez 2021, App. D; Djolonga & Krause 2017; thresholds ours",
                   summary, remedy, {"points": len(data)}), (data, samples)
