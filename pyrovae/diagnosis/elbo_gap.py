r"""The ELBO against the importance-sampled log-likelihood: how much the bound gives away.

:math:`\log p_\theta(x) - \mathrm{ELBO}(x) = KL[q_\phi(z|x)\|p_\theta(z|x)]` (Yacoby, Pan & Doshi-Velez
2021, Eq. 3). Averaged over the data it is the price the ELBO charges a decoder whose posterior q
cannot fit — the term that makes the ELBO prefer a worse model with simpler posteriors over the
maximum-likelihood one (their Sec. 5; Yacoby, Pan & Doshi-Velez 2020, Sec. 1). Here
:math:`\log p_\theta(x)` is importance-sampled with the encoder's widened q as proposal
(:func:`pyrovae.metrics.likelihood.vae_log_likelihood`, S = 1000, variance ×2: Yacoby, Pan &
Doshi-Velez 2020, App. E) on up to 300 points, the ELBO averaged over 20 draws per point.

Same thresholds as :mod:`.mismatch` (mean − 2 se: warning 0.25, failure 0.5 nats per point; ours);
remedy IWAE. The importance-sampling effective sample size is reported; where it is small the
log-likelihood (and so the gap) is an underestimate.
"""

from __future__ import annotations

import math

import torch

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding
from pyrovae.diagnosis.mismatch import FAILURE, WARNING

__all__ = ["check_elbo_gap"]


def check_elbo_gap(ctx: RunContext, points: int = 300, samples: int = 1000) -> Finding:
    from pyrovae.metrics.likelihood import vae_log_likelihood

    m = min(points, len(ctx.observed))
    condition, observed = ctx.condition[:m], ctx.observed[:m]
    log_lik, diag = vae_log_likelihood(ctx.model, condition, observed, num_samples=samples, seed=ctx.seed, return_diagnostics=True)
    g = ctx.generator(3)
    with torch.no_grad():
        draws = [ctx.model.terms(condition, observed, generator=g) for _ in range(20)]
    elbo = -torch.stack([t["recon"] + t["kl"] for t in draws]).double().mean(0)
    gap = log_lik.double() - elbo
    mean = float(gap.mean())
    se = float(gap.std() / math.sqrt(m)) if m > 1 else 0.0
    low = mean - 2 * se
    verdict = "failure" if low >= FAILURE else "warning" if low >= WARNING else "ok"
    ess = float(diag.ess.median())
    summary = (f"log p(x) − ELBO = {mean:.3g} ± {se:.2g} nats per point on {m} points (log p(x) = {float(log_lik.mean()):.4g}, "
               f"ELBO = {float(elbo.mean()):.4g}; median importance ESS {ess:.0f} of {samples})")
    if verdict != "ok":
        summary += ": the ELBO pays for a posterior q cannot fit, and prefers models whose posteriors it can"
    return Finding("ELBO vs log-likelihood", verdict, mean, f"mean − 2 se: warning ≥ {WARNING}, failure ≥ {FAILURE} nats",
                   "Yacoby, Pan & Doshi-Velez 2021, Eq. 3 and Sec. 5; 2020, App. E (estimator); thresholds ours",
                   summary, remedies.iwae(ctx.cfg) if verdict != "ok" else None,
                   {"log_likelihood": float(log_lik.mean()), "elbo": float(elbo.mean()), "gap_se": se, "ess_median": ess,
                    "points": m})
