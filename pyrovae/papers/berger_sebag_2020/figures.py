"""Berger & Sebag (2020) Fig. 2 and the collapse diagram of Theorem 1, drawn from the closed forms of
:mod:`pyrovae.theory.hypersphere`."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
import numpy as np

from pyrovae.errors import ConfigError
from pyrovae.plots import save_figure
from pyrovae.theory import hypersphere as hs
from pyrovae.theory.hypersphere import check_dim, check_positive

__all__ = ["plot_likelihood_heatmap", "plot_collapse_diagram"]


def plot_likelihood_heatmap(path, *, D: int = 2, max_R_over_sigma: float = 4.0,
                            max_r_over_sigma: float = 4.0, n: int = 161) -> Path:
    r"""Berger & Sebag Fig. 2: Eq. (8) over (R/σ, r/σ) for a given D (default D = 2 as in the paper).

    Colour is :math:`\log p_\theta(x) - \max_r \log p_\theta(x)` in each column (one column per R/σ;
    lighter is higher), so the argmax in r is visible at every R/σ; the paper does not say how its
    colours are scaled, so this per-column normalisation is our choice. Overlaid: the argmax
    curve, the diagonal r = R, and the thresholds R/σ = √D (exact) and √(D−1) (Theorem 1).
    Returns the path.

    References:
        Berger & Sebag (2020), Eq. (8), Fig. 2.
    """
    D = check_dim(D)
    check_positive("max_R_over_sigma", max_R_over_sigma)
    check_positive("max_r_over_sigma", max_r_over_sigma)
    Rs = np.linspace(0.0, max_R_over_sigma, n)
    rs = np.linspace(0.0, max_r_over_sigma, n)
    RR, rr = np.meshgrid(Rs, rs)                  # rows: r/σ, columns: R/σ
    ll = -(RR**2 + rr**2) / 2 + hs.log_angular_mgf((rr * RR).ravel(), D).reshape(rr.shape)
    rel = ll - ll.max(axis=0, keepdims=True)
    fig = Figure(figsize=(5.6, 4.6))
    ax = fig.subplots()
    im = ax.imshow(np.maximum(rel, -10.0), origin="lower", aspect="auto", cmap="magma",
                   extent=(Rs[0], Rs[-1], rs[0], rs[-1]))
    fig.colorbar(im, ax=ax, label=r"$\log p_\theta(x) - \max_r \log p_\theta(x)$")
    ax.plot(Rs, rs[np.argmax(rel, axis=0)], color="tab:cyan", lw=1.5, label="argmax r")
    ax.plot(Rs, np.minimum(Rs, max_r_over_sigma), color="w", ls=":", lw=1, label="r = R")
    ax.axvline(np.sqrt(D), color="tab:green", ls="--", lw=1, label=r"$R/\sigma=\sqrt{D}$ (exact)")
    ax.axvline(np.sqrt(D - 1), color="tab:red", ls="--", lw=1, label=r"$R/\sigma=\sqrt{D-1}$ (Thm 1)")
    ax.set_xlim(Rs[0], Rs[-1])
    ax.set_ylim(rs[0], rs[-1])
    ax.set_xlabel(r"$R/\sigma$")
    ax.set_ylabel(r"$r/\sigma$")
    ax.set_title(f"Berger & Sebag Eq. (8), D = {D}")
    ax.legend(loc="upper left", fontsize=7, frameon=False, labelcolor="w")
    return save_figure(fig, Path(path))


def plot_collapse_diagram(path, *, dims=tuple(range(2, 51)), max_R_over_sigma: float = 10.0,
                          n_ratio: int = 200, n_r: int = 400) -> Path:
    r"""Phase diagram of Berger & Sebag Theorem 1: optimal r/R over (D, R/σ), with both thresholds.

    Cells with r* = 0 are the collapsed VAE; the curves R/σ = √D (exact boundary) and √(D−1)
    (Theorem 1's sufficient bound) are overlaid. Returns the path.

    References:
        Berger & Sebag (2020), Theorem 1, Eq. (8), Fig. 2.
    """
    dims = [check_dim(D) for D in dims]
    if not dims:
        raise ConfigError("dims must not be empty")
    check_positive("max_R_over_sigma", max_R_over_sigma)
    ratios = np.linspace(0.0, max_R_over_sigma, n_ratio)
    best = hs.optimal_radius_grid(dims, ratios, n_r=n_r)
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.subplots()
    d = np.asarray(dims, dtype=float)
    im = ax.pcolormesh(ratios, d, best, shading="nearest", cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label=r"optimal $r/R$")
    ax.plot(np.sqrt(d), d, color="w", lw=1.5, label=r"$R/\sigma=\sqrt{D}$ (exact)")
    ax.plot(np.sqrt(d - 1), d, color="tab:red", ls="--", lw=1.2, label=r"$R/\sigma=\sqrt{D-1}$ (Thm 1)")
    ax.set_xlim(ratios[0], ratios[-1])
    ax.set_xlabel(r"$R/\sigma$")
    ax.set_ylabel("D")
    ax.set_title("Optimal decoder radius (0: collapsed)")
    ax.legend(loc="lower right", fontsize=7, frameon=False, labelcolor="w")
    return save_figure(fig, Path(path))
