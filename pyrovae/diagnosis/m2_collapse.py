r"""M2's functional collapse: a decoder that ignores the label, :math:`p_\theta(x|y) \approx p_\theta(x)`
(Yacoby, Pan & Doshi-Velez 2021, Sec. 7, Fig. 6).

Score (0 = collapse, 1 = as label-sensitive as the truth):

* with the data's generating function known (the semi-circles of App. H), the library's
  :func:`pyrovae.metrics.semisupervised.functional_collapse`:
  :math:`E_z\|f_\theta(z, y_1) - f_\theta(z, y_2)\|` over the same quantity of the true f;
* otherwise, from the data alone: the smooth kNN statistic between draws of
  :math:`p_\theta(x|y_1)` and :math:`p_\theta(x|y_2)` over the same statistic between the labelled points of
  the two classes (how far apart the model's cohorts are, against how far apart the data's are).

Verdict: failure below 0.6, warning below 0.85 (ours; the paper's collapsed VAE scores ≈ 0.4 with
this library, its IWAE ≈ 1). The details add the separability check of their guideline 1
(:func:`pyrovae.metrics.separability.separability`): classes that a simple classifier cannot tell
apart are where collapse is expected. Remedy: the IWAE bound, which learns distinct conditionals
(at the price of a worse p(x): it over-fits the few labels, Sec. 7).
"""

from __future__ import annotations

import torch

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding

__all__ = ["check_functional_collapse"]

WARNING, FAILURE = 0.85, 0.6


def _two_classes(ctx: RunContext) -> tuple[float, float]:
    model, data = ctx.model, ctx.data
    if not model.discrete:
        return -3.5, 3.5  # the cohorts of Table 4 (continuous semi-circle)
    labels = data.labels[data.labelled].reshape(-1).long()
    counts = torch.bincount(labels, minlength=model.num_classes)
    a, b = counts.argsort(descending=True)[:2].tolist()
    return float(min(a, b)), float(max(a, b))


def _data_score(ctx: RunContext, y1: float, y2: float, m: int = 200) -> tuple[float, dict]:
    from pyrovae.metrics.two_sample import smooth_knn_statistic

    data = ctx.data
    labels = data.labels[data.labelled].reshape(-1)
    points = data.observed[data.labelled]
    first, second = points[labels == y1][:m], points[labels == y2][:m]
    k = min(len(first), len(second))
    if k < 5:
        return float("nan"), {"reason": f"only {k} labelled points in the smaller class"}
    torch.manual_seed(ctx.seed + 5)
    model_1 = ctx.model.sample(k, y=y1)[0]
    model_2 = ctx.model.sample(k, y=y2)[0]
    data_stat = float(smooth_knn_statistic(first[:k].double(), second[:k].double()).value)
    model_stat = float(smooth_knn_statistic(model_1.double(), model_2.double()).value)
    return model_stat / data_stat if data_stat > 0 else float("nan"), {"data_knn": data_stat, "model_knn": model_stat}


def check_functional_collapse(ctx: RunContext) -> Finding:
    from pyrovae.metrics.separability import separability

    y1, y2 = _two_classes(ctx)
    kind = ctx.data.truth.get("kind")
    if kind in ("discrete", "continuous") and ctx.data.name.endswith("semicircle"):
        from pyrovae.data.yacoby_m2 import semicircle_f
        from pyrovae.metrics.semisupervised import functional_collapse

        score = functional_collapse(ctx.model, lambda z, y: semicircle_f(z, y, kind), y1, y2, seed=ctx.seed)
        value, how = score.score, f"decoder spread {score.learned:.3g} against the true f's {score.truth:.3g}"
        details = {"learned_spread": score.learned, "true_spread": score.truth}
    else:
        value, details = _data_score(ctx, y1, y2)
        how = "model cohorts' kNN distance over the labelled data's"
    details["labels"] = [y1, y2]
    if ctx.model.discrete:
        sep = separability(ctx.data.observed[ctx.data.labelled], ctx.data.labels[ctx.data.labelled].reshape(-1), seed=ctx.seed)
        details["separability"] = {"balanced_accuracy": sep.balanced_accuracy, "normalised_entropy": sep.normalised_entropy}
    if value != value:  # NaN: not enough labels to judge
        return Finding("M2 functional collapse", "skipped", None, "", "", f"not judged: {details.get('reason', '')}",
                       details=details)
    verdict = "failure" if value < FAILURE else "warning" if value < WARNING else "ok"
    summary = f"functional-collapse score {value:.3g} ({how}; labels {y1:g} and {y2:g})"
    if verdict != "ok":
        summary += ": p(x|y) barely depends on y, the decoder ignores the label"
    return Finding("M2 functional collapse", verdict, value, f"failure < {FAILURE}, warning < {WARNING}",
                   "Yacoby, Pan & Doshi-Velez 2021, Sec. 7 and guideline 1 (separability); thresholds ours", summary,
                   remedies.conditional_guide(ctx.cfg) if verdict != "ok" else None, details)
