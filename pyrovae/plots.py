"""Figures for a run: σ and KL trajectories, data against reconstructions and samples."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

__all__ = ["save_figure", "plot_sigma", "plot_kl", "plot_pairs", "write_run_plots"]


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (dpi 120, parents created) and close ``fig``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_sigma(history: pd.DataFrame, path: Path, true_sigma: float | None = None, title: str = "") -> Path:
    """σ after each block against gradient steps; calibrations marked with a star (Liu & Wang 2025 Fig. 2a)."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    ax.plot(history["step"], history["sigma"], lw=1.5, label="σ")
    cal = history[history["event"] == "calibrate"]
    if len(cal):
        ax.scatter(cal["step"], cal["sigma"], marker="*", s=120, color="tab:red", zorder=3, label="calibrated σ")
    if true_sigma:
        ax.axhline(true_sigma, ls="--", color="k", lw=1, label=f"true σ = {true_sigma:g}")
    ax.set_yscale("log")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("decoder σ")
    ax.set_title(title or "σ trajectory")
    ax.legend(frameon=False)
    return save_figure(fig, path)


def plot_kl(history: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Mean KL[q(z|x,y) || p(z)] per block; β on a second axis when it is annealed."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    ax.plot(history["step"], history["kl"], color="tab:green", lw=1.5, label="KL")
    cal = history[history["event"] == "calibrate"]
    for step in cal["step"]:
        ax.axvline(step, color="tab:red", lw=0.6, alpha=0.5)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title(title or "KL trajectory (red: calibrations)")
    if (history["beta"] != 1).any():
        ax2 = ax.twinx()
        ax2.plot(history["step"], history["beta"], color="tab:gray", lw=1, ls=":")
        ax2.set_ylabel("β")
    return save_figure(fig, path)


def _scatter(ax, y: np.ndarray, labels: np.ndarray, title: str) -> None:
    if y.shape[1] == 1:
        ax.scatter(labels, y[:, 0], s=2, alpha=0.5)
        ax.set_xlabel("x₁")
        ax.set_ylabel("y")
    else:
        for value in np.unique(labels) if len(np.unique(labels)) <= 10 else [None]:
            mask = labels == value if value is not None else slice(None)
            ax.scatter(y[mask, 0], y[mask, 1], s=2, alpha=0.5, label=None if value is None else f"x = {value:g}")
        ax.set_xlabel("y₁")
        ax.set_ylabel("y₂")
        if len(np.unique(labels)) <= 10:
            ax.legend(markerscale=4, frameon=False, fontsize=8)
    ax.set_title(title)


def plot_pairs(data_y: torch.Tensor, other_y: torch.Tensor, x: torch.Tensor, path: Path, other_title: str) -> Path:
    """Training data beside reconstructions or generated samples, coloured by the first input column."""
    labels = x[:, 0].cpu().numpy() if x.shape[1] else np.zeros(len(x))
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    _scatter(axes[0], data_y.cpu().numpy(), labels, "training data")
    _scatter(axes[1], other_y.cpu().numpy(), labels, other_title)
    return save_figure(fig, path)


def write_run_plots(result, data, out_dir: str | Path) -> list[Path]:
    """The four figures of a run, in ``out_dir/plots``."""
    plots = Path(out_dir) / "plots"
    model, history = result.model, result.history
    true_sigma = data.truth.get("sigma")
    x, y = data.condition.to(next(model.parameters()).device), data.observed.to(next(model.parameters()).device)
    return [
        plot_sigma(history, plots / "sigma.png", true_sigma, f"σ ({result.metrics['algorithm']})"),
        plot_kl(history, plots / "kl.png"),
        plot_pairs(y, model.reconstruct(x, y), x, plots / "reconstructions.png", "reconstructions  y' ~ p(y|x,z), z ~ q"),
        plot_pairs(y, model.sample(x), x, plots / "samples.png", "generated  y ~ p(y|x)"),
    ]
