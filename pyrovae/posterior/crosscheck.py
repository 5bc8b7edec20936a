r"""Cross-check MCMC draws against a grid posterior: the check that catches a wrong mode.

With small decoder noise (σ = 0.05) and a bimodal posterior, every chain can sit in one
mode with r̂ ≈ 1 and a high ESS (``REFERENCE_NOTES.md``, "Measured here"). Convergence
diagnostics compare chains with each other, so they cannot see it; a grid posterior of a
1-D or 2-D latent can. For every point and latent dimension this compares

* the sample mean with the grid mean, in units of the Monte-Carlo standard error
  :math:`\sqrt{\mathrm{Var}_{grid} / \mathrm{ESS}}`, and
* the sample variance with the grid variance, in units of its Monte-Carlo standard error
  :math:`\sqrt{(\mu_4 - \sigma^4)_{grid} / \mathrm{ESS}_{(z-\bar z)^2}}`,

and flags the points where either is off.

References:
    Vehtari, Gelman, Simpson, Carpenter & Bürkner, *Rank-normalization, folding, and
    localization: an improved R-hat*, Bayesian Analysis 2021 (the ESS estimator, Geyer's
    initial monotone sequence, used here without rank normalisation).
    Yacoby, Pan & Doshi-Velez, *Failure Modes of VAEs* (Yacoby, Pan & Doshi-Velez 2021), Fig. 3 (multimodal posteriors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pyrovae.errors import DataError
from pyrovae.posterior.grid import GridPosterior
from pyrovae.posterior.samples import PosteriorSamples

__all__ = ["effective_sample_size", "CrossCheck", "grid_crosscheck"]


def effective_sample_size(draws: np.ndarray) -> np.ndarray:
    """ESS of the mean for ``draws`` of shape ``(chain, draw, ...)``; returns shape ``(...)``.

    Split-free multi-chain estimator of Stan / Vehtari et al. (2021): the combined
    autocorrelation :math:`\\rho_t = 1 - (W - \\bar{\\gamma}_t) / \\widehat{var}^+`, truncated
    by Geyer's initial positive and monotone sequence. Constant draws give ESS = number of draws.
    """
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2 or x.shape[1] < 4:
        raise DataError(f"need draws of shape (chain, draw >= 4, ...), got {x.shape}")
    c, n = x.shape[:2]
    rest = x.shape[2:]
    x = x.reshape(c, n, -1)
    centred = x - x.mean(1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n  # (C, n, K), biased
    chain_var = acov[:, 0] * n / (n - 1.0)
    w = chain_var.mean(0)  # (K,)
    var_plus = w * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + x.mean(1).var(0, ddof=1)
    safe = np.where(var_plus > 0, var_plus, 1.0)
    rho = 1.0 - (w[None] - acov.mean(0)) / safe[None]  # (n, K)
    rho[0] = 1.0
    m = n // 2
    pairs = rho[: 2 * m : 2] + rho[1 : 2 * m : 2]  # (m, K)
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)  # initial positive sequence
    pairs = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)  # made monotone
    pairs = np.where(positive, pairs, 0.0)
    tau = -1.0 + 2.0 * pairs.sum(0)
    tau = np.maximum(tau, 1.0 / np.log10(c * n))  # Stan's cap on antithetic chains
    ess = c * n / tau
    ess = np.where(var_plus > 0, ess, float(c * n))
    return ess.reshape(rest)


@dataclass
class CrossCheck:
    """Result of :func:`grid_crosscheck`: one table row per point and latent dimension."""

    table: pd.DataFrame
    flagged_points: list[int]

    @property
    def ok(self) -> bool:
        return not self.flagged_points


def grid_crosscheck(
    samples: PosteriorSamples,
    grid: GridPosterior,
    z_tol: float = 5.0,
    mean_floor: float = 0.05,
    var_floor: float = 0.1,
) -> CrossCheck:
    r"""Compare sample means and variances with the grid's; flag the points that disagree.

    A mean is flagged when it is more than ``z_tol`` Monte-Carlo standard errors *and* more
    than ``mean_floor`` grid standard deviations from the grid mean; a variance when it is
    more than ``z_tol`` standard errors from the grid variance *and*
    :math:`|\log(\hat v / v_{grid})|` exceeds ``var_floor``.
    The floors keep quadrature and jitter noise from flagging long, correct runs.
    """
    z = samples.z.detach().cpu().double().numpy()  # (C, D, N, d)
    if list(samples.points) != list(grid.points) or z.shape[2:] != tuple(grid.mean.shape):
        raise DataError(
            f"samples (points {list(samples.points)[:5]}..., shape {z.shape[2:]}) and grid "
            f"(points {list(grid.points)[:5]}..., shape {tuple(grid.mean.shape)}) describe different points"
        )
    ess = np.clip(effective_sample_size(z), 1.0, None)  # (N, d), for the mean
    flat = z.reshape(-1, *z.shape[2:])
    s_mean, s_var = flat.mean(0), flat.var(0, ddof=1)
    g_mean = grid.mean.detach().cpu().double().numpy()
    g_var = grid.var.detach().cpu().double().numpy()
    g_sd = np.sqrt(g_var)
    mcse = np.sqrt(g_var / ess)
    mean_z = (s_mean - g_mean) / mcse
    flag_mean = (np.abs(mean_z) > z_tol) & (np.abs(s_mean - g_mean) > mean_floor * g_sd)
    # the variance is a mean of squared deviations: their ESS from the draws, their spread
    # mu_4 - sigma^4 from the grid (the null hypothesis), so under-dispersed draws cannot
    # shrink their own error bar
    sq = (z - s_mean) ** 2
    ess_sq = np.clip(effective_sample_size(sq), 1.0, None)
    m4 = grid.central_moment(4).detach().cpu().double().numpy()
    var_se = np.sqrt(np.clip(m4 - g_var**2, 0.0, None) / ess_sq)
    var_z = (s_var - g_var) / np.maximum(var_se, 1e-300)
    log_ratio = np.log(np.clip(s_var, 1e-300, None) / g_var)
    flag_var = (np.abs(var_z) > z_tol) & (np.abs(log_ratio) > var_floor)
    n, d = g_mean.shape
    point_idx = np.repeat(np.asarray(samples.points), d)
    table = pd.DataFrame(
        {
            "point": point_idx,
            "latent": np.tile(np.arange(d), n),
            "sample_mean": s_mean.ravel(),
            "grid_mean": g_mean.ravel(),
            "mean_z": mean_z.ravel(),
            "sample_var": s_var.ravel(),
            "grid_var": g_var.ravel(),
            "var_z": var_z.ravel(),
            "log_var_ratio": log_ratio.ravel(),
            "ess": ess.ravel(),
            "ess_var": ess_sq.ravel(),
            "flag_mean": flag_mean.ravel(),
            "flag_var": flag_var.ravel(),
        }
    )
    table["flagged"] = table["flag_mean"] | table["flag_var"]
    bad = sorted(set(table.loc[table["flagged"], "point"].astype(int).tolist()))
    return CrossCheck(table, bad)
