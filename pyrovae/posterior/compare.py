r"""How far the encoder is from the true posterior, and the aggregate posterior from the prior.

* Per point, the posterior-matching term of Yacoby, Pan & Doshi-Velez (2021) Eq. 3,
  :math:`KL[q_\phi(z \mid x) \| p_\theta(z \mid x)] = \log p_\theta(y) - \mathrm{ELBO}(y)`,
  with the ELBO estimated by Monte Carlo under :math:`q_\phi` and :math:`\log p_\theta(y)` taken
  from the exact linear-Gaussian formula, the grid's quadrature, or importance sampling with a
  proposal fitted to posterior draws (a defensive mixture of :math:`q_\phi` and a widened
  Gaussian fit to the draws). For a linear-Gaussian decoder the KL is also available in
  closed form.
* The aggregate posterior :math:`q(z) = \frac1N \sum_n q_\phi(z \mid x_n)` against the prior
  :math:`N(0, I)` by the unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012, Eq. 3).

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of VAEs* (Yacoby, Pan & Doshi-Velez 2021), Eq. 3.
    Gretton, Borgwardt, Rasch, Schölkopf & Smola, *A Kernel Two-Sample Test*, JMLR 2012, Lemma 6 / Eq. 3.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.two_sample import median_bandwidth, mmd2_unbiased
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl
from pyrovae.posterior.grid import GridPosterior
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget

__all__ = [
    "elbo_per_point",
    "log_evidence_from_samples",
    "posterior_kl",
    "aggregate_posterior_mmd",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _diag_normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r = (z - loc) / scale
    return -(0.5 * r.pow(2) + scale.log() + 0.5 * _LOG_2PI).sum(-1)


def elbo_per_point(
    target: LatentTarget, q_loc: torch.Tensor, q_scale: torch.Tensor, num_samples: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Monte-Carlo :math:`\mathrm{ELBO}_n = E_{q}[\log p(y_n, z) - \log q(z)]` and its standard error, each ``(N,)``."""
    kw = dict(dtype=target.dtype, device=target.device)
    q_loc, q_scale = q_loc.to(**kw), q_scale.to(**kw)
    gen = torch.Generator(device=target.device).manual_seed(int(seed))
    z = q_loc + q_scale * torch.randn((num_samples,) + tuple(q_loc.shape), generator=gen, **kw)
    with torch.no_grad():
        w = (target.log_joint(z) - _diag_normal_log_prob(z, q_loc, q_scale)).double()  # (S, N)
    return w.mean(0), w.std(0) / math.sqrt(num_samples)


def log_evidence_from_samples(
    target: LatentTarget,
    samples: PosteriorSamples,
    q_loc: torch.Tensor | None = None,
    q_scale: torch.Tensor | None = None,
    num_proposals: int = 2000,
    inflate: float = 1.5,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Importance-sampling :math:`\log p(y_n)` with a proposal built from posterior draws.

    Proposal: :math:`r = \tfrac12 N(\hat\mu_n, \text{inflate}^2 \hat\Sigma_n) + \tfrac12 q_\phi`
    (only the first part without ``q``), where :math:`\hat\mu_n, \hat\Sigma_n` are the draws'
    mean and covariance. Returns the estimate ``(N,)`` and the importance-weight ESS fraction
    ``(N,)`` (near 1: reliable; near 0: not).
    """
    kw = dict(dtype=torch.float64, device=target.device)
    z = samples.z.to(**kw).flatten(0, 1)  # (S, N, d)
    n, d = target.num_points, target.latent_dim
    if z.shape[1:] != (n, d):
        raise DataError(f"samples of shape {tuple(z.shape[1:])} for a target of {n} points and {d} latents")
    mu = z.mean(0)
    centred = z - mu
    cov = torch.einsum("sni,snj->nij", centred, centred) / max(z.shape[0] - 1, 1)
    cov = inflate**2 * cov + 1e-8 * torch.eye(d, **kw)
    fit = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
    gen = torch.Generator(device=target.device).manual_seed(int(seed))
    draws = mu + (torch.linalg.cholesky(cov) @ torch.randn(num_proposals, n, d, 1, generator=gen, **kw)).squeeze(-1)
    log_r = fit.log_prob(draws)
    if q_loc is not None and q_scale is not None:
        q_loc, q_scale = q_loc.to(**kw), q_scale.to(**kw)
        from_q = q_loc + q_scale * torch.randn(num_proposals, n, d, generator=gen, **kw)
        use_q = torch.rand(num_proposals, n, 1, generator=gen, **kw) < 0.5
        draws = torch.where(use_q, from_q, draws)
        log_r = torch.logaddexp(fit.log_prob(draws), _diag_normal_log_prob(draws, q_loc, q_scale)) - math.log(2.0)
    with torch.no_grad():
        log_w = target.log_joint(draws.to(target.dtype)).double() - log_r
    log_z = torch.logsumexp(log_w, 0) - math.log(num_proposals)
    w = torch.softmax(log_w, 0)
    ess_frac = 1.0 / (w.pow(2).sum(0) * num_proposals)
    return log_z, ess_frac


def posterior_kl(
    target: LatentTarget,
    reference: LinearGaussian | GridPosterior | PosteriorSamples,
    q_loc: torch.Tensor | None = None,
    q_scale: torch.Tensor | None = None,
    num_samples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Per-point :math:`KL[q_\phi(z \mid x_n, y_n) \| p_\theta(z \mid x_n, y_n)]` (Yacoby, Pan & Doshi-Velez 2021 Eq. 3).

    ``q_loc``/``q_scale`` default to the target's encoder. Columns: ``point, kl, kl_se,
    log_evidence, elbo, elbo_se, source``; with a :class:`LinearGaussian` reference ``kl`` is
    the closed form and ``kl_mc`` the Monte-Carlo value beside it.
    """
    if q_loc is None or q_scale is None:
        enc = target.encoder()
        if enc is None:
            raise ConfigError("posterior_kl needs q's location and scale, or a target built from a model with an encoder")
        q_loc, q_scale = enc
    q_loc = q_loc.to(dtype=target.dtype, device=target.device)
    q_scale = q_scale.to(dtype=target.dtype, device=target.device)
    if q_loc.shape != (target.num_points, target.latent_dim) or q_scale.shape != q_loc.shape:
        raise DataError(f"q's location and scale must be ({target.num_points}, {target.latent_dim})")
    elbo, elbo_se = elbo_per_point(target, q_loc, q_scale, num_samples, seed)
    closed = None
    if isinstance(reference, LinearGaussian):
        if target.observed is None:
            raise ConfigError("the exact reference needs the target's y")
        log_ev = reference.log_marginal(target.observed.double()).double()
        mean, cov = reference.posterior(target.observed.double())
        closed = gaussian_kl(q_loc.double(), torch.diag_embed(q_scale.double().pow(2)), mean, cov)
        source = "exact"
    elif isinstance(reference, GridPosterior):
        log_ev = reference.log_evidence.double()
        source = "grid"
    elif isinstance(reference, PosteriorSamples):
        log_ev, _ = log_evidence_from_samples(target, reference, q_loc, q_scale, seed=seed + 1)
        source = f"samples ({reference.method})"
    else:
        raise ConfigError(f"unknown reference {type(reference).__name__}; use LinearGaussian, GridPosterior or PosteriorSamples")
    kl_mc = (log_ev.to(elbo.device) - elbo).cpu()
    frame = pd.DataFrame(
        {
            "point": list(target.points),
            "kl": (closed.cpu() if closed is not None else kl_mc).numpy(),
            "kl_se": np.zeros(target.num_points) if closed is not None else elbo_se.cpu().numpy(),
            "log_evidence": log_ev.cpu().numpy(),
            "elbo": elbo.cpu().numpy(),
            "elbo_se": elbo_se.cpu().numpy(),
        }
    )
    if closed is not None:
        frame["kl_mc"] = kl_mc.numpy()
    frame["source"] = source
    return frame


# -- aggregate posterior vs prior -------------------------------------------------------
def aggregate_posterior_mmd(
    model, condition: torch.Tensor, observed: torch.Tensor, max_points: int = 2000, bandwidth: float | None = None, seed: int = 0
) -> dict:
    r"""Unbiased MMD² between one draw :math:`z_n \sim q_\phi(z \mid x_n, y_n)` per point (at
    most ``max_points`` points) and as many prior draws :math:`N(0, I)`. Returns
    ``{"mmd2", "bandwidth", "num_points"}``."""
    if not hasattr(model, "encode"):
        raise ConfigError(f"{type(model).__name__} has no encoder")
    gen = torch.Generator().manual_seed(int(seed))
    n = min(int(max_points), condition.shape[0])
    idx = torch.randperm(condition.shape[0], generator=gen)[:n]
    with torch.no_grad():
        loc, scale = model.encode(condition[idx], observed[idx])
    loc, scale = loc.detach().cpu().double(), scale.detach().cpu().double()
    zq = loc + scale * torch.randn(loc.shape, generator=gen, dtype=torch.float64)
    zp = torch.randn(loc.shape, generator=gen, dtype=torch.float64)
    h = median_bandwidth(zq, zp) if bandwidth is None else float(bandwidth)
    return {"mmd2": float(mmd2_unbiased(zq, zp, h)), "bandwidth": h, "num_points": n}
