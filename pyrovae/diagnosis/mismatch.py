r"""Posterior mismatch: the encoder's q(z | x, y) against the decoder's true posterior on a sample of points.

Per point, :math:`KL[q_\phi(z|x)\|p_\theta(z|x)] = \log p_\theta(x) - \mathrm{ELBO}(x)` (Yacoby, Pan &
Doshi-Velez 2021, Eq. 3; :func:`pyrovae.posterior.compare.posterior_kl`), with the true posterior from

* the closed form for the linear and Cholesky models (Yacoby, Pan & Doshi-Velez 2020, App. C),
* a grid for one or two latent dimensions (:func:`pyrovae.posterior.grid.grid_posterior`; the range
  covers the prior's bulk and every q to 6 sd, with cells at most a quarter of the narrowest q's sd),
* batched HMC otherwise (:func:`pyrovae.posterior.batched_hmc.batched_hmc`).

The verdict is on the mean over the points, less two standard errors: warning from 0.25 nats,
failure from 0.5 nats (ours: well-fitted mean-field VAEs of the library's benchmarks leave 0.05-0.15
nats; 0.5 nats is a likelihood ratio of 1.6 that the ELBO gives away per point). The details keep each point's KL and, for 2-D latents, the true posterior's correlation,
which a mean-field q cannot represent. Remedy: IWAE, whose bound weakens posterior matching
(Yacoby, Pan & Doshi-Velez 2021, Sec. 5).
"""

from __future__ import annotations

import math

import torch

from pyrovae.diagnosis import remedies
from pyrovae.diagnosis.context import RunContext
from pyrovae.diagnosis.findings import Finding
from pyrovae.model_kinds import MODEL_KINDS

__all__ = ["check_mismatch", "posterior_reference"]

WARNING, FAILURE = 0.25, 0.5


def posterior_reference(ctx: RunContext, target):
    """The true posterior of ``target``'s points (module docstring) and its name."""
    if MODEL_KINDS[ctx.kind].linear:
        from pyrovae.posterior.exact import LinearGaussian

        return LinearGaussian.from_decoder(ctx.model.decoder), "exact"
    d = target.latent_dim
    if d <= 2:
        from pyrovae.posterior.grid import grid_posterior

        loc, scale = target.encoder()
        low = min(-4.5, float((loc - 6 * scale).min()))
        high = max(4.5, float((loc + 6 * scale).max()))
        cap = 4001 if d == 1 else 401
        resolution = int(min(cap, max(101 if d == 2 else 801, math.ceil(4 * (high - low) / float(scale.min())))))
        return grid_posterior(target, limit=(low, high), resolution=resolution, on_flag="ignore"), "grid"
    from pyrovae.posterior.batched_hmc import batched_hmc

    return batched_hmc(target, num_samples=300, warmup_steps=300, num_chains=2, seed=ctx.seed), "batched HMC"


def check_mismatch(ctx: RunContext, points: int = 12) -> tuple[Finding, dict]:
    """The finding, and what the q-against-posterior figure needs (``target``, ``reference``, q)."""
    from pyrovae.posterior.compare import posterior_kl
    from pyrovae.posterior.target import model_target

    points = min(points, len(ctx.observed))
    chosen = torch.randperm(len(ctx.observed), generator=ctx.generator(2))[:points].sort().values.tolist()
    target = model_target(ctx.model, ctx.condition, ctx.observed, points=chosen)
    reference, how = posterior_reference(ctx, target)
    frame = posterior_kl(target, reference, num_samples=500, seed=ctx.seed)
    kl = torch.tensor(frame["kl"].to_numpy(dtype=float))
    mean = float(kl.mean())
    se = float(kl.std() / math.sqrt(len(kl))) if len(kl) > 1 else 0.0
    low = mean - 2 * se
    verdict = "failure" if low >= FAILURE else "warning" if low >= WARNING else "ok"
    details = {"points": [int(ctx.index[i]) for i in chosen], "kl": kl.tolist(), "reference": how,
               "kl_mean": mean, "kl_se": se}
    extra = ""
    if how == "grid" and target.latent_dim == 2:
        cov = reference.cov.double()
        corr = cov[:, 0, 1] / (cov[:, 0, 0] * cov[:, 1, 1]).sqrt()
        details["posterior_correlation"] = corr.tolist()
        extra = f"; largest |correlation| of the true posterior {float(corr.abs().max()):.2f} (q is mean-field)"
    if how == "grid":
        details["grid_flags"] = {k: int(v.sum()) for k, v in reference.flags.items()}
    worst = int(kl.argmax())
    summary = (f"KL(q ‖ p) over {points} points ({how} posterior): mean {mean:.3g} ± {se:.2g} nats, "
               f"largest {float(kl[worst]):.3g} at point {details['points'][worst]}{extra}")
    remedy = remedies.iwae(ctx.cfg) if verdict != "ok" else None
    if verdict != "ok":
        summary += ": q cannot follow the decoder's posterior"
    finding = Finding("posterior mismatch", verdict, mean, f"mean − 2 se: warning ≥ {WARNING}, failure ≥ {FAILURE} nats",
                      "Yacoby, Pan & Doshi-Velez 2021, Eq. 3 (KL(q‖p)); thresholds ours", summary, remedy, details)
    q_loc, q_scale = target.encoder()
    return finding, {"reference": reference, "q_loc": q_loc, "q_scale": q_scale, "target": target}
