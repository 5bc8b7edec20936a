r"""Posterior collapse: which latent dimensions carry information, and which kind of collapse it is.

Numbers: the mean KL per latent dimension :math:`\frac1n\sum_n KL[q(z_j|x_n)\|N(0,1)]`
(:func:`pyrovae.metrics.information.kl_per_dimension`), the active units
(:math:`\mathrm{Var}_x E_q[z_j] \ge 0.01`, Burda et al. 2016, :func:`~pyrovae.metrics.information.active_units`)
and the KSG estimate of :math:`I(x; z_j)` with one draw :math:`z \sim q(z|x)` per point (Kraskov et al. 2004;
Yacoby, Pan & Doshi-Velez 2021, App. D; :func:`~pyrovae.metrics.information.latent_mutual_information`).

Verdict: no active unit is a failure; some inactive units beside active ones are Dai, Wang & Wipf
(2019)'s category (i), *selective* collapse, which is benign (ok). A failure is then classified by
their taxonomy (Sec. 3), with the decoder σ against the data-scale threshold :math:`R/\sqrt D`
(:mod:`.references`):

* **variance too large** — category (ii): σ is fixed (not learned) at or above the threshold, so the
  KL term dominates and collapse is the optimum (also Berger & Sebag 2020, Theorem 1). Remedy: learn σ.
* **bad local minimum** — category (v): σ is learned and has grown to the threshold
  (:math:`\sigma^2 \approx \bar\gamma`, Dai et al.'s Proposition 1: the decoder explains every point as
  noise around the mean). Remedy: calibrate σ (Liu & Wang 2025, Algorithm 1), whose shrinking of σ
  leaves that minimum.
* **KL-driven** — σ is well below the threshold, yet the KL term has pushed q to the prior (the
  encoder lags the decoder). Remedy: Lagging Inference Networks (He et al. 2019).
"""

from __future__ import annotations

import numpy as np
import torch

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding

__all__ = ["check_collapse", "AU_THRESHOLD", "LOCAL_MINIMUM_RATIO"]

AU_THRESHOLD = 0.01  # Burda et al. 2016
#: σ at this fraction of R/√D or more counts as "σ has absorbed the data's spread" (ours; Dai et al.'s
#: Proposition 1 puts the collapsed minimum at exactly 1).
LOCAL_MINIMUM_RATIO = 0.8
SOURCE = "Burda et al. 2016 (active units); Dai, Wang & Wipf 2020, Sec. 3 (taxonomy)"


def check_collapse(ctx: RunContext, scale_threshold: float) -> Finding:
    """The collapse finding of ``ctx``; ``scale_threshold`` is :func:`.references.collapse_sigma`."""
    from pyrovae.metrics.information import active_units, kl_per_dimension, latent_mutual_information

    kl = kl_per_dimension(ctx.loc, ctx.scale).double()
    au = active_units(ctx.loc, AU_THRESHOLD)
    z = ctx.loc + ctx.scale * torch.randn(ctx.loc.shape, generator=ctx.generator(1))
    points = torch.cat([ctx.condition, ctx.observed], 1).double().numpy()
    mi = latent_mutual_information(points, z.double().numpy(), seed=ctx.seed)
    d = kl.shape[0]
    details = {"kl_per_dimension": kl.tolist(), "active": au.mask.tolist(), "mean_variance": au.variance.tolist(),
               "mutual_information": np.asarray(mi).tolist(), "sigma": float(ctx.model.sigma),
               "collapse_sigma": scale_threshold}
    numbers = (f"{au.count} of {d} latent dimensions active; KL per dimension "
               f"{', '.join(f'{v:.3g}' for v in kl.tolist())} nats; I(x; z_j) {', '.join(f'{v:.2g}' for v in mi)} nats")
    threshold = f"a dimension is active when Var_x E_q[z_j] ≥ {AU_THRESHOLD}; failure: no active dimension"
    if au.count == d:
        return Finding("posterior collapse", "ok", float(au.count), threshold, SOURCE, f"no collapse: {numbers}",
                       details=details)
    if au.count > 0:
        return Finding("posterior collapse", "ok", float(au.count), threshold, SOURCE,
                       f"selective collapse (Dai et al.'s category (i), benign: unused dimensions sit at the prior): "
                       f"{numbers}", details=details)
    kind, remedy = _classify(ctx, scale_threshold)
    details["kind"] = kind
    return Finding("posterior collapse", "failure", float(au.count), threshold, SOURCE,
                   f"posterior collapse, {kind}: {numbers}", remedy, details)


def _classify(ctx: RunContext, scale_threshold: float):
    """Dai et al.'s category of a collapse, and the remedy for it (module docstring)."""
    cfg, noise = ctx.cfg, ctx.model.noise
    ratio = ctx.model.sigma / scale_threshold if scale_threshold > 0 else float("inf")
    learned = noise.learned or noise.settable
    unfinished = ctx.metrics.get("status") == "max_steps" and cfg.algorithm == "calibrated"
    if not learned and ratio >= LOCAL_MINIMUM_RATIO:
        how = f"variance too large (category (ii): σ fixed at {ratio:.2f} × R/√D; at 1 or more collapse is the optimum)"
        return how, (remedies.calibrate(cfg) if cfg.model in ("cvae", "vae") else None)
    if ratio >= LOCAL_MINIMUM_RATIO:
        how = (f"bad local minimum of the decoder (category (v): σ has grown to {ratio:.2f} × R/√D, the decoder "
               "explains the data as noise around its mean)")
        if cfg.model not in ("cvae", "vae"):
            return how, None
        if cfg.algorithm != "calibrated":
            return how, remedies.calibrate(cfg)
        if unfinished:  # the calibrations had not run their course
            return how, remedies.train_longer(cfg)
        return how, (remedies.robust_calibration(cfg) if cfg.calibration != "robust" else remedies.lagging(cfg))
    how = f"KL-driven (σ = {ratio:.2f} × R/√D is small enough to use z, but q sits at the prior)"
    return how, remedies.train_longer(cfg) if unfinished else remedies.lagging(cfg)
