r"""Panels like Yacoby, Pan & Doshi-Velez's Figures 6, 17 and 20: per method, the learned :math:`f_\theta(z, y)` for each
label against the true :math:`f(z, y)` (top row), and draws of :math:`p_\theta(x|y)` against draws of the
true cohort :math:`p(x|y)` (bottom row).

Both semi-circle functions trace the same arc, so the top row plots the *angle* of :math:`f(z, y)`
(``atan2(x2, x1)``, in units of π) against ``z``: functional collapse is the two solid curves
lying on top of each other, whatever the data marginal looks like.

Input: ``{method: curves}`` with the ``curves`` dict that
:func:`pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles.fit_m2_semicircle` returns (``z``, ``learned``, ``true``,
``samples``, ``reference``, ``labels``; plain lists).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrovae.errors import DataError

__all__ = ["plot_m2_panels"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _angle(points: np.ndarray) -> np.ndarray:
    """Angle of each point in units of π, in [-0.5, 1.5) so that the semi-circle's ends do not wrap."""
    a = np.arctan2(points[:, 1], points[:, 0])
    return np.where(a < -np.pi / 2, a + 2 * np.pi, a) / np.pi


def plot_m2_panels(panels: dict[str, dict], path: Path, title: str = "") -> Path:
    """Write the figure to ``path`` (PNG) and return it."""
    if not panels:
        raise DataError("no panels to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(panels)
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 7.5), squeeze=False)
    for j, (method, c) in enumerate(panels.items()):
        top, bottom = axes[0, j], axes[1, j]
        for i, label in enumerate(c["labels"]):
            z = np.asarray(c["z"])
            true, learned = np.asarray(c["true"][i]), np.asarray(c["learned"][i])
            top.plot(z, _angle(true), color=_COLOURS[i], lw=1, ls="--", label=f"true f(z, y={label})")
            top.plot(z, _angle(learned), color=_COLOURS[i], lw=2, label=f"learned f(z, y={label})")
            ref, smp = np.asarray(c["reference"][i]), np.asarray(c["samples"][i])
            bottom.scatter(ref[:, 0], ref[:, 1], s=3, color=_COLOURS[i], alpha=0.25, label=f"true p(x|y={label})")
            bottom.scatter(smp[:, 0], smp[:, 1], s=3, marker="x", color=_COLOURS[i], alpha=0.6,
                           label=f"learned p(x|y={label})")
        top.set_title(f"{method}: angle of f(z, y)")
        top.set_xlabel("z")
        top.set_ylabel("atan2(x2, x1) / π")
        top.legend(fontsize=6, loc="upper left")
        bottom.set_title(f"{method}: samples of p(x|y)")
        bottom.set_aspect("equal")
        bottom.set_xlabel("x1")
        bottom.set_ylabel("x2")
        bottom.legend(fontsize=6, loc="lower center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
