r"""The decoder's σ against the two numbers that say whether it is sensible for these data.

1. **σ against its ELBO optimum** :math:`\hat\sigma` (Liu & Wang 2025, Eq. 10; Yacoby, Pan &
   Doshi-Velez 2021, Eq. 9; :func:`.references.analytic_sigma`). A learned or analytic σ ends at
   :math:`\hat\sigma`; a σ far from it is held there from outside (a fixed σ, a schedule) and the
   ELBO's balance between reconstruction and KL is off by the factor :math:`(\hat\sigma/\sigma)^2`
   (Dai, Wang & Wipf 2020's γ). Verdict on the ratio σ/σ̂: ok within [0.8, 1.25], warning within
   [0.5, 2], failure outside (ours: a factor 2 in σ is a factor 4 on the reconstruction term).
2. **σ against the data-scale threshold** :math:`R/\sqrt D` (Berger & Sebag 2020, Theorem 1 in the
   library's exact form; :func:`.references.collapse_sigma`): at or above it a decoder that ignores
   z is the ELBO's optimum. Failure at a ratio ≥ 1, warning from 0.8.

An observation model whose σ varies with z (``head`` or ``network``, Berger & Sebag's LV-VAE) is
summarised by its geometric mean over the data, which is what both ratios use.
"""

from __future__ import annotations

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding
from pyrovae.model_kinds import MODEL_KINDS

__all__ = ["check_sigma_optimum", "check_sigma_threshold"]


def _summary_sigma(ctx: RunContext) -> float:
    """The model's σ; for a σ(x, z), the geometric mean over the subsample at z = E_q[z]."""
    import torch

    if not ctx.model.noise.per_point:
        return float(ctx.model.sigma)
    with torch.no_grad():
        _, sigma = ctx.model(ctx.model.decoder_input(ctx.condition, ctx.loc))
        return float(sigma.log().mean().exp())


def check_sigma_optimum(ctx: RunContext, sigma_hat: float) -> Finding:
    source = "Liu & Wang 2025, Eq. 10; Yacoby, Pan & Doshi-Velez 2021, Eq. 9 (σ̂); tolerance ours"
    if MODEL_KINDS[ctx.kind].linear:
        return Finding("decoder σ vs its optimum", "skipped", None, "", source,
                       f"not judged: the noise is tied to the decoder (σ_ε² − B), no σ to set (σ̂ = {sigma_hat:.4g})",
                       details={"sigma_hat": sigma_hat})
    sigma = _summary_sigma(ctx)
    ratio = sigma / sigma_hat if sigma_hat > 0 else float("inf")
    verdict = "ok" if 0.8 <= ratio <= 1.25 else "warning" if 0.5 <= ratio <= 2.0 else "failure"
    summary = f"σ = {sigma:.4g} against the ELBO-optimal σ̂ = {sigma_hat:.4g} of its own residuals (ratio {ratio:.3g})"
    remedy = None
    if verdict != "ok":
        summary += ": σ is held " + ("above" if ratio > 1 else "below") + " what the residuals support"
        if ctx.kind in ("cvae", "vae"):
            remedy = remedies.calibrate(ctx.cfg)
    return Finding("decoder σ vs its optimum", verdict, ratio, "ok in [0.8, 1.25], warning in [0.5, 2]", source,
                   summary, remedy, {"sigma": sigma, "sigma_hat": sigma_hat})


def check_sigma_threshold(ctx: RunContext, threshold: float) -> Finding:
    sigma = _summary_sigma(ctx)
    ratio = sigma / threshold if threshold > 0 else float("inf")
    verdict = "failure" if ratio >= 1.0 else "warning" if ratio >= 0.8 else "ok"
    what = "of y given x" if not ctx.unconditional else "of the data"
    summary = (f"σ = {sigma:.4g} is {ratio:.3g} × R/√D = {threshold:.4g} (R: root-mean-square spread {what}, "
               f"D = {ctx.observed.shape[1]})")
    remedy = None
    if verdict == "failure":
        summary += ": at this σ a decoder that ignores z is the optimum"
    elif verdict == "warning":
        summary += ": σ is close to where a decoder that ignores z becomes the optimum"
    if verdict != "ok" and ctx.kind in ("cvae", "vae"):
        noise = ctx.model.noise
        remedy = remedies.calibrate(ctx.cfg) if (noise.learned or noise.settable) else remedies.learn_sigma(ctx.cfg)
        if not (noise.learned or noise.settable):
            remedy.text = "a sharper observation model: " + remedy.text
    return Finding("decoder σ vs R/√D", verdict, ratio, "failure at ≥ 1, warning at ≥ 0.8",
                   "Berger & Sebag 2020, Theorem 1 (exact form R/√D); Dai, Wang & Wipf 2020, Prop. 1 (γ̄)",
                   summary, remedy, {"sigma": sigma, "threshold": threshold})
