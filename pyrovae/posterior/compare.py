r"""How far the encoder is from the true posterior, and the aggregate posterior from the prior.

* Per point, the posterior-matching term of seed 001 Eq. 3,
  :math:`KL[q_\phi(z \mid x) \| p_\theta(z \mid x)] = \log p_\theta(y) - \mathrm{ELBO}(y)`,
  with the ELBO estimated by Monte Carlo under :math:`q_\phi` and :math:`\log p_\theta(y)` taken
  from the exact linear-Gaussian formula, the grid's quadrature, or importance sampling with a
  proposal fitted to posterior draws (a defensive mixture of :math:`q_\phi` and a widened
  Gaussian fit to the draws). For a linear-Gaussian decoder the KL is also available in
  closed form.
* The aggregate posterior :math:`q(z) = \frac1N \sum_n q_\phi(z \mid x_n)` against the prior
  :math:`N(0, I)` by the unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012, Eq. 3).
* A figure of :math:`q_\phi` beside the true posterior for chosen points (contours in 2-D,
  curves in 1-D).

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of VAEs* (seed 001), Eq. 3.
    Gretton, Borgwardt, Rasch, Schölkopf & Smola, *A Kernel Two-Sample Test*, JMLR 2012, Lemma 6 / Eq. 3.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl
from pyrovae.posterior.grid import GridPosterior
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget

__all__ = [
    "elbo_per_point",
    "log_evidence_from_samples",
    "posterior_kl",
    "mmd2_unbiased",
    "median_bandwidth",
    "aggregate_posterior_mmd",
    "plot_q_vs_posterior",
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
    r"""Per-point :math:`KL[q_\phi(z \mid x_n, y_n) \| p_\theta(z \mid x_n, y_n)]` (seed 001 Eq. 3).

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
        if target.y is None:
            raise ConfigError("the exact reference needs the target's y")
        log_ev = reference.log_marginal(target.y.double()).double()
        mean, cov = reference.posterior(target.y.double())
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
def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """The median heuristic: the median pairwise distance of the pooled sample."""
    pooled = torch.cat([x, y]).double()
    dist = torch.cdist(pooled, pooled)
    off = dist[~torch.eye(pooled.shape[0], dtype=torch.bool, device=pooled.device)]
    return float(off.median().clamp_min(1e-12))


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    r"""Unbiased :math:`\widehat{MMD}^2_u` with :math:`k(a, b) = \exp(-\|a - b\|^2 / (2 h^2))`.

    .. math::
        \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{mn}\sum_{i, j} k(x_i, y_j)

    (Gretton et al. 2012, Eq. 3). ``bandwidth`` ``h`` defaults to :func:`median_bandwidth`.
    It can be negative when the distributions agree.
    """
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"need two samples of at least 2 rows with the same columns, got {tuple(x.shape)} and {tuple(y.shape)}")
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ConfigError(f"bandwidth must be positive, got {h}")

    def k(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2.0 * h * h))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2.0 * kxy.mean()


def aggregate_posterior_mmd(
    model, x: torch.Tensor, y: torch.Tensor, max_points: int = 2000, bandwidth: float | None = None, seed: int = 0
) -> dict:
    r"""Unbiased MMD² between one draw :math:`z_n \sim q_\phi(z \mid x_n, y_n)` per point (at
    most ``max_points`` points) and as many prior draws :math:`N(0, I)`. Returns
    ``{"mmd2", "bandwidth", "num_points"}``."""
    if not hasattr(model, "encode"):
        raise ConfigError(f"{type(model).__name__} has no encoder")
    gen = torch.Generator().manual_seed(int(seed))
    n = min(int(max_points), x.shape[0])
    idx = torch.randperm(x.shape[0], generator=gen)[:n]
    with torch.no_grad():
        loc, scale = model.encode(x[idx], y[idx])
    loc, scale = loc.detach().cpu().double(), scale.detach().cpu().double()
    zq = loc + scale * torch.randn(loc.shape, generator=gen, dtype=torch.float64)
    zp = torch.randn(loc.shape, generator=gen, dtype=torch.float64)
    h = median_bandwidth(zq, zp) if bandwidth is None else float(bandwidth)
    return {"mmd2": float(mmd2_unbiased(zq, zp, h)), "bandwidth": h, "num_points": n}


# -- figure -----------------------------------------------------------------------------
def _gauss_pdf_2d(g0, g1, mean, cov):
    pos = np.stack([g0, g1], -1) - mean
    prec = np.linalg.inv(cov)
    q = np.einsum("...i,ij,...j->...", pos, prec, pos)
    return np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


def plot_q_vs_posterior(
    q_loc: torch.Tensor,
    q_scale: torch.Tensor,
    reference: GridPosterior | PosteriorSamples | LinearGaussian,
    y: torch.Tensor | None = None,
    which: Sequence[int] | None = None,
    path: str | Path | None = None,
    max_panels: int = 6,
):
    r"""Figure of :math:`q_\phi(z \mid x_n, y_n)` beside the true posterior for chosen points.

    ``which`` are positions among the reference's points (default the first ``max_panels``).
    1-D latents: density curves (the grid's, a histogram of draws, or the exact Gaussian)
    against :math:`q`'s. 2-D latents: filled contours (grid/exact) or draws (samples) with
    :math:`q`'s contours on top; with more dimensions the first two are shown. ``y`` is needed
    for a :class:`LinearGaussian` reference. Saved to ``path`` (PNG) when given; the
    figure is returned (Agg backend, no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    q_loc = q_loc.detach().cpu().double().numpy()
    q_scale = q_scale.detach().cpu().double().numpy()
    n, d = q_loc.shape
    if isinstance(reference, LinearGaussian):
        if y is None:
            raise ConfigError("plotting against the exact posterior needs y")
        r_mean, r_cov = (t.detach().cpu().double().numpy() for t in reference.posterior(y))
        label, points = "exact posterior", list(range(n))
    elif isinstance(reference, GridPosterior):
        r_mean, r_cov = reference.mean.cpu().double().numpy(), reference.cov.cpu().double().numpy()
        label, points = "grid posterior", list(reference.points)
    elif isinstance(reference, PosteriorSamples):
        draws = reference.z.detach().cpu().double().flatten(0, 1).numpy()  # (S, N, d)
        r_mean = draws.mean(0)
        r_cov = np.stack([np.atleast_2d(np.cov(draws[:, i].T)) for i in range(draws.shape[1])])
        label, points = f"{reference.method} draws", list(reference.points)
    else:
        raise ConfigError(f"cannot plot against {type(reference).__name__}")
    if r_mean.shape[0] != n:
        raise DataError(f"q has {n} points but the reference {r_mean.shape[0]}")
    which = list(range(min(n, max_panels))) if which is None else [int(i) for i in which]
    if not which or any(i < 0 or i >= n for i in which):
        raise ConfigError(f"panel indices must lie in [0, {n})")
    cols = min(3, len(which))
    rows = int(math.ceil(len(which) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(which):]:
        ax.set_visible(False)
    for ax, i in zip(axes.flat, which):
        r_sd = np.sqrt(np.clip(np.diagonal(r_cov[i]), 1e-300, None))
        lo = np.minimum(r_mean[i] - 4.5 * r_sd, q_loc[i] - 4.5 * q_scale[i])
        hi = np.maximum(r_mean[i] + 4.5 * r_sd, q_loc[i] + 4.5 * q_scale[i])
        if d == 1:
            t = np.linspace(lo[0], hi[0], 400)
            q_pdf = np.exp(-0.5 * ((t - q_loc[i, 0]) / q_scale[i, 0]) ** 2) / (q_scale[i, 0] * np.sqrt(2 * np.pi))
            if isinstance(reference, GridPosterior):
                axis = reference.axes[0].cpu().double().numpy()
                dens = reference.density()[i].cpu().double().numpy()
                keep = (axis >= lo[0]) & (axis <= hi[0])
                ax.plot(axis[keep], dens[keep], color="k", lw=1.8, label=label)
            elif isinstance(reference, PosteriorSamples):
                ax.hist(draws[:, i, 0], bins=50, range=(lo[0], hi[0]), density=True, color="0.7", label=label)
            else:
                sd = r_sd[0]
                ax.plot(t, np.exp(-0.5 * ((t - r_mean[i, 0]) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color="k", lw=1.8, label=label)
            ax.plot(t, q_pdf, color="C3", lw=1.5, ls="--", label="q(z | x, y)")
            ax.set_xlabel("z")
        else:
            g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 160), np.linspace(lo[1], hi[1], 160), indexing="ij")
            q_cov = np.diag(q_scale[i, :2] ** 2)
            if isinstance(reference, GridPosterior):
                axis = reference.axes[0].cpu().double().numpy()
                dens = reference.density()[i].cpu().double().numpy()
                k0 = (axis >= lo[0]) & (axis <= hi[0])
                k1 = (axis >= lo[1]) & (axis <= hi[1])
                if k0.sum() >= 2 and k1.sum() >= 2:
                    ax.contourf(axis[k0], axis[k1], dens[np.ix_(k0, k1)].T, levels=12, cmap="Greys")
                else:  # narrower than a grid cell: draw the moments instead
                    ax.contourf(g0, g1, _gauss_pdf_2d(g0, g1, r_mean[i, :2], r_cov[i][:2, :2]), levels=12, cmap="Greys")
            elif isinstance(reference, PosteriorSamples):
                s = draws[:, i, :2]
                s = s[np.linspace(0, len(s) - 1, min(len(s), 2000)).astype(int)]
                ax.scatter(s[:, 0], s[:, 1], s=2, color="0.4", alpha=0.5, label=label)
            else:
                ax.contourf(g0, g1, _gauss_pdf_2d(g0, g1, r_mean[i, :2], r_cov[i][:2, :2]), levels=12, cmap="Greys")
            ax.contour(g0, g1, _gauss_pdf_2d(g0, g1, q_loc[i, :2], q_cov), levels=6, colors="C3", linewidths=1.0)
            ax.set_xlabel("z1")
            ax.set_ylabel("z2")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
        ax.set_title(f"point {points[i]}", fontsize=10)
    if d == 1:
        axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"q(z | x, y) (red) vs the true posterior ({label})", fontsize=11)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
