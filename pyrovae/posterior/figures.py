r"""The posterior layer's figures: the encoder beside the true posterior, trace and rank plots.

* :func:`plot_q_vs_posterior` — :math:`q_\phi(z \mid x_n, y_n)` against the true posterior of
  chosen points (Yacoby, Pan & Doshi-Velez 2021, Eq. 3 compares the two): the sampler's draws,
  a grid or the exact Gaussian, optionally with the grid drawn over the draws.
* :func:`write_trace_and_rank` — ArviZ's trace and rank plots (Vehtari et al. 2021, Sec. 4.1)
  of the first points' latents.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no back-end switch); the
ArviZ 1.x path closes the figure its ``PlotCollection`` made.

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of Variational Autoencoders and Their Effects on
    Downstream Tasks*, 2021, Eq. 3.
    Vehtari, Gelman, Simpson, Carpenter & Bürkner, *Rank-normalization, folding, and
    localization: an improved R-hat*, Bayesian Analysis 2021 (rank plots).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior.arviz_adapter import arviz_group, arviz_major_version
from pyrovae.posterior.exact import LinearGaussian
from pyrovae.posterior.grid import GridPosterior
from pyrovae.posterior.samples import PosteriorSamples

__all__ = ["plot_q_vs_posterior", "write_trace_and_rank"]

_Q_COLOR, _GRID_COLOR, _DRAW_COLOR = "C3", "k", "0.55"


def _gauss_pdf_2d(g0, g1, mean, cov):
    pos = np.stack([g0, g1], -1) - mean
    prec = np.linalg.inv(cov)
    q = np.einsum("...i,ij,...j->...", pos, prec, pos)
    return np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


def _moments(reference, observed, n):
    """Mean ``(N, d)``, covariance ``(N, d, d)``, label and point labels of a reference."""
    if isinstance(reference, LinearGaussian):
        if observed is None:
            raise ConfigError("plotting against the exact posterior needs y")
        mean, cov = (t.detach().cpu().double().numpy() for t in reference.posterior(observed))
        return mean, cov, "exact posterior", list(range(n))
    if isinstance(reference, GridPosterior):
        return reference.mean.cpu().double().numpy(), reference.cov.cpu().double().numpy(), "grid posterior", list(reference.points)
    if isinstance(reference, PosteriorSamples):
        draws = reference.z.detach().cpu().double().flatten(0, 1).numpy()  # (S, N, d)
        cov = np.stack([np.atleast_2d(np.cov(draws[:, i].T)) for i in range(draws.shape[1])])
        return draws.mean(0), cov, f"{reference.method} draws", list(reference.points)
    raise ConfigError(f"cannot plot against {type(reference).__name__}")


def _grid_panel_1d(ax, grid: GridPosterior, i: int, lo: float, hi: float, **style) -> None:
    axis = grid.axes[0].cpu().double().numpy()
    dens = grid.density()[i].cpu().double().numpy()
    keep = (axis >= lo) & (axis <= hi)
    ax.plot(axis[keep], dens[keep], **style)


def _grid_panel_2d(ax, grid: GridPosterior, i: int, lo, hi, filled: bool) -> bool:
    """Grid density contours inside the panel; ``False`` when narrower than two cells."""
    axis = grid.axes[0].cpu().double().numpy()
    dens = grid.density()[i].cpu().double().numpy()
    k0 = (axis >= lo[0]) & (axis <= hi[0])
    k1 = (axis >= lo[1]) & (axis <= hi[1])
    if k0.sum() < 2 or k1.sum() < 2:
        return False
    values = dens[np.ix_(k0, k1)].T
    if filled:
        ax.contourf(axis[k0], axis[k1], values, levels=12, cmap="Greys")
    else:
        ax.contour(axis[k0], axis[k1], values, levels=6, colors=_GRID_COLOR, linewidths=0.8)
    return True


def plot_q_vs_posterior(
    q_loc: torch.Tensor,
    q_scale: torch.Tensor,
    reference: GridPosterior | PosteriorSamples | LinearGaussian,
    observed: torch.Tensor | None = None,
    which: Sequence[int] | None = None,
    path: str | Path | None = None,
    max_panels: int = 6,
    grid: GridPosterior | None = None,
):
    r"""Figure of :math:`q_\phi(z \mid x_n, y_n)` beside the true posterior for chosen points.

    ``which`` are positions among the reference's points (default the first ``max_panels``).
    1-D latents: the reference (the grid's density curve, a histogram of the sampler's draws, or
    the exact Gaussian) against :math:`q`'s density. 2-D latents: filled contours (grid/exact) or
    the draws (samples) with :math:`q`'s contours on top; with more dimensions the first two are
    shown. ``grid`` (with sample references) draws the grid posterior over the draws. Every panel
    set has a legend. ``y`` is needed for a :class:`LinearGaussian` reference. Saved to ``path``
    (PNG) when given; the ``matplotlib.figure.Figure`` is returned.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    q_loc = q_loc.detach().cpu().double().numpy()
    q_scale = q_scale.detach().cpu().double().numpy()
    n, d = q_loc.shape
    r_mean, r_cov, label, points = _moments(reference, observed, n)
    if r_mean.shape[0] != n:
        raise DataError(f"q has {n} points but the reference {r_mean.shape[0]}")
    if grid is not None and (not isinstance(reference, PosteriorSamples) or grid.num_points != n):
        raise ConfigError("grid= overlays a grid of the same points on sampler draws")
    which = list(range(min(n, max_panels))) if which is None else [int(i) for i in which]
    if not which or any(i < 0 or i >= n for i in which):
        raise ConfigError(f"panel indices must lie in [0, {n})")
    is_draws = isinstance(reference, PosteriorSamples)
    draws = reference.z.detach().cpu().double().flatten(0, 1).numpy() if is_draws else None
    cols = min(3, len(which))
    rows = int(math.ceil(len(which) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(which):]:
        ax.set_visible(False)
    for ax, i in zip(axes.flat, which):
        r_sd = np.sqrt(np.clip(np.diagonal(r_cov[i]), 1e-300, None))
        lo = np.minimum(r_mean[i] - 4.5 * r_sd, q_loc[i] - 4.5 * q_scale[i])
        hi = np.maximum(r_mean[i] + 4.5 * r_sd, q_loc[i] + 4.5 * q_scale[i])
        if d == 1:
            t = np.linspace(lo[0], hi[0], 400)
            if isinstance(reference, GridPosterior):
                _grid_panel_1d(ax, reference, i, lo[0], hi[0], color=_GRID_COLOR, lw=1.8)
            elif is_draws:
                ax.hist(draws[:, i, 0], bins=50, range=(lo[0], hi[0]), density=True, color=_DRAW_COLOR)
                if grid is not None:
                    _grid_panel_1d(ax, grid, i, lo[0], hi[0], color=_GRID_COLOR, lw=1.2)
            else:
                sd = r_sd[0]
                ax.plot(t, np.exp(-0.5 * ((t - r_mean[i, 0]) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color=_GRID_COLOR, lw=1.8)
            q_pdf = np.exp(-0.5 * ((t - q_loc[i, 0]) / q_scale[i, 0]) ** 2) / (q_scale[i, 0] * np.sqrt(2 * np.pi))
            ax.plot(t, q_pdf, color=_Q_COLOR, lw=1.5, ls="--")
            ax.set_xlabel("z")
        else:
            g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 160), np.linspace(lo[1], hi[1], 160), indexing="ij")
            moments = lambda: _gauss_pdf_2d(g0, g1, r_mean[i, :2], r_cov[i][:2, :2])  # noqa: E731
            if isinstance(reference, GridPosterior):
                if not _grid_panel_2d(ax, reference, i, lo, hi, filled=True):  # narrower than a cell: the moments
                    ax.contourf(g0, g1, moments(), levels=12, cmap="Greys")
            elif is_draws:
                s = draws[:, i, :2]
                s = s[np.linspace(0, len(s) - 1, min(len(s), 2000)).astype(int)]
                ax.scatter(s[:, 0], s[:, 1], s=2, color=_DRAW_COLOR, alpha=0.5)
                if grid is not None:
                    _grid_panel_2d(ax, grid, i, lo, hi, filled=False)
            else:
                ax.contourf(g0, g1, moments(), levels=12, cmap="Greys")
            q_cov = np.diag(q_scale[i, :2] ** 2)
            ax.contour(g0, g1, _gauss_pdf_2d(g0, g1, q_loc[i, :2], q_cov), levels=6, colors=_Q_COLOR, linewidths=1.0)
            ax.set_xlabel("z1")
            ax.set_ylabel("z2")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
        ax.set_title(f"point {points[i]}", fontsize=10)
    # one legend for the figure, with proxies (contour sets carry no labels)
    if is_draws:
        ref_handle = Patch(color=_DRAW_COLOR, label=label) if d == 1 else Line2D([], [], ls="", marker=".", color=_DRAW_COLOR, label=label)
    else:
        ref_handle = Line2D([], [], color=_GRID_COLOR, lw=1.8, label=label) if d == 1 else Patch(color="0.5", label=label)
    handles = [ref_handle]
    if grid is not None:
        handles.append(Line2D([], [], color=_GRID_COLOR, lw=1.0, label="grid posterior"))
    handles.append(Line2D([], [], color=_Q_COLOR, ls="--" if d == 1 else "-", label="q(z | x, y), encoder"))
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=9, frameon=False)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _selection(post, max_rows: int) -> tuple[dict, int]:
    """The first points (and latents) whose (point, latent) rows fit in ``max_rows``."""
    points = np.asarray(post["point"].values)
    latents = np.asarray(post["latent"].values)[: max(1, min(len(post["latent"]), max_rows))]
    k = max(1, min(len(points), max_rows // len(latents)))
    return {"point": points[:k].tolist(), "latent": latents.tolist()}, k * len(latents)


def write_trace_and_rank(data: Any, out_dir: str | Path, var_name: str = "z", max_rows: int = 8) -> dict[str, Path]:
    """``trace.png`` and ``rank.png`` of ``var_name`` for the first points, at most ``max_rows``
    (point, latent) rows; divergences (``sample_stats.diverging``) are marked on the trace.

    Returns the paths written, keyed ``"trace"`` and ``"rank"``."""
    import arviz as az

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    post = arviz_group(data, "posterior")
    if post is None or var_name not in post:
        raise DataError(f"no variable {var_name!r} in the posterior")
    coords, rows = _selection(post, max_rows)
    paths = {"trace": out / "trace.png", "rank": out / "rank.png"}
    if arviz_major_version() >= 1:  # pragma: no cover - ArviZ 1.x is not installed here
        import matplotlib.pyplot as plt

        for kind, plot in (("trace", az.plot_trace_dist), ("rank", az.plot_rank)):
            pc = plot(data, var_names=[var_name], coords=coords, backend="matplotlib")
            pc.savefig(paths[kind])
            plt.close(pc.get_viz("figure"))
        return paths
    from matplotlib.figure import Figure

    ss = arviz_group(data, "sample_stats")
    divergences = "bottom" if ss is not None and "diverging" in ss else False
    # fixed margins: a layout engine costs seconds per figure here
    fig = Figure(figsize=(10, 2.0 * rows + 0.4))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.4 / (2.0 * rows + 0.4), top=1 - 0.6 / (2.0 * rows + 0.4), hspace=0.6, wspace=0.15)
    az.plot_trace(data, var_names=[var_name], coords=coords, compact=False, divergences=divergences, axes=fig.subplots(rows, 2, squeeze=False))
    fig.savefig(paths["trace"], dpi=90)
    cols = min(2, rows)
    height = 2.6 * math.ceil(rows / cols) + 0.4
    fig = Figure(figsize=(5 * cols, height))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.4 / height, top=1 - 0.6 / height, hspace=0.6, wspace=0.2)
    axes = fig.subplots(math.ceil(rows / cols), cols, squeeze=False).ravel()
    for ax in axes[rows:]:
        ax.set_visible(False)
    az.plot_rank(data, var_names=[var_name], coords=coords, ax=axes[:rows])
    fig.savefig(paths["rank"], dpi=90)
    return paths
