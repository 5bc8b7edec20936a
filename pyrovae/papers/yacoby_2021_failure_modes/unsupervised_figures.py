r"""Figures of Yacoby, Pan & Doshi-Velez's unsupervised experiments, drawn from the plain lists that
:func:`pyrovae.papers.yacoby_2021_failure_modes.unsupervised.fit_one` returns with ``arrays=True``.

* :func:`density_panels` — one row per model, like Figures 4, 5 and 10-16: (a) samples of the learned
  :math:`p_\theta(x)` over the test data; (b) the learned manifold :math:`f_\theta(z)`, z on [-3, 3],
  coloured by z, over the data; (c) the encoder mean :math:`\mu_\phi(x)` against the true z of each test
  point (the posterior panel: a fold or a step shows where the learned posterior differs from the truth).
* :func:`projection_panels` — Appendix F, Figure 7: a uniform grid in x and its projection
  :math:`f_\theta(\mu_\phi(x))` onto the learned manifold, one panel per model.

References:
    Yacoby, Pan & Doshi-Velez (2021), Figures 4, 5, 7, 10-16, App. E and F.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pyrovae.errors import ConfigError
from pyrovae.plots import save_figure

__all__ = ["density_panels", "projection_panels"]


def _xy(a) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    return arr[:, :2]  # the 5-D embedding: its first two coordinates


def density_panels(panels: dict[str, dict], path: Path) -> Path:
    """One row of three panels per entry of ``panels`` (title → arrays); writes a PNG to ``path``."""
    if not panels:
        raise ConfigError("density_panels needs at least one model")
    fig, axes = plt.subplots(len(panels), 3, figsize=(12, 3.6 * len(panels)), squeeze=False)
    for row, (title, a) in zip(axes, panels.items()):
        data, samples = _xy(a["data"]), _xy(a["samples"])
        row[0].scatter(data[:, 0], data[:, 1], s=3, alpha=0.4, color="tab:gray", label="test data")
        row[0].scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, color="tab:orange", label=r"samples of $p_\theta(x)$")
        row[0].set_title(f"{title}: learned p(x)", fontsize=9)
        row[0].legend(fontsize=7, markerscale=3)
        row[1].scatter(data[:, 0], data[:, 1], s=3, alpha=0.2, color="tab:gray")
        if "grid_f" in a:
            f = _xy(a["grid_f"])
            sc = row[1].scatter(f[:, 0], f[:, 1], c=np.asarray(a["grid_z"]), s=6, cmap="viridis")
            fig.colorbar(sc, ax=row[1], label="z")
        row[1].set_title(r"learned $f_\theta(z)$, z in [-3, 3]", fontsize=9)
        row[2].scatter(a["z_true"], a["z_loc"], s=3, alpha=0.5)
        row[2].set_xlabel("true z")
        row[2].set_ylabel(r"encoder mean $\mu_\phi(x)$")
        row[2].set_title("posterior: encoder mean against the true code", fontsize=9)
        for ax in row[:2]:
            ax.set_aspect("equal", adjustable="datalim")
    return save_figure(fig, Path(path))


def projection_panels(panels: dict[str, dict], path: Path) -> Path:
    """App. F (Fig. 7): grid points (gray) joined to their projections onto the learned manifold (black)."""
    if not panels:
        raise ConfigError("projection_panels needs at least one model")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    for ax, (title, a) in zip(axes[0], panels.items()):
        src, dst = np.asarray(a["proj_from"]), np.asarray(a["proj_to"])
        data = _xy(a["data"])
        ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.2, color="tab:blue", label="data")
        for p, q in zip(src, dst):
            ax.plot([p[0], q[0]], [p[1], q[1]], color="black", lw=0.5, alpha=0.6)
        ax.scatter(src[:, 0], src[:, 1], s=6, color="tab:gray", label="grid")
        ax.scatter(dst[:, 0], dst[:, 1], s=8, color="black", label=r"$f_\theta(\mu_\phi(x))$")
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=7)
    return save_figure(fig, Path(path))
