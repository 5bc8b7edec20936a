"""The report's figures, each returned as a base64 PNG string so the HTML page carries them inline:
σ and KL trajectories from the run's history, KL per latent dimension, q against the true posterior
for a few points, data against the model's samples."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure

__all__ = ["encode", "trajectories", "kl_bars", "q_vs_posterior", "data_vs_samples"]


def encode(fig, layout: bool = True) -> str:
    """``fig`` as a base64 PNG (dpi 100), laid out first unless ``layout`` is False (a figure that did
    its own), closed afterwards when it came from pyplot."""
    buffer = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    if getattr(fig, "number", None) is not None:  # a pyplot figure: release it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def trajectories(history) -> str | None:
    """σ (log scale, calibrations starred) and KL against gradient steps; M2's loss per epoch; LiBI's
    log-likelihood and ELBO per round."""
    if history is None or len(history) == 0:
        return None
    if "round" in history.columns:  # LiBI: one row per round
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.plot(history["round"] + 1, history["val_log_lik"], marker="o", color="tab:blue", label="log p(x)")
        ax.plot(history["round"] + 1, -history["neg_elbo"], marker="s", color="tab:green", label="ELBO")
        ax.set_xlabel("LiBI round")
        ax.set_ylabel("per point (nats)")
        ax.set_title("LiBI rounds")
        ax.legend(frameon=False)
        return encode(fig)
    if "sigma" not in history.columns:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.plot(history["epoch"], history["loss"], color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylabel("−J per point")
        ax.set_title("M2 training loss")
        return encode(fig)
    fig = Figure(figsize=(10, 3.4))
    left, right = fig.subplots(1, 2)
    left.plot(history["step"], history["sigma"], lw=1.5)
    cal = history[history["event"] == "calibrate"] if "event" in history.columns else history.iloc[:0]
    if len(cal):
        left.scatter(cal["step"], cal["sigma"], marker="*", s=90, color="tab:red", zorder=3, label="calibration")
        left.legend(frameon=False)
    left.set_yscale("log")
    left.set_xlabel("gradient step")
    left.set_ylabel("decoder σ")
    left.set_title("σ trajectory")
    right.plot(history["step"], history["kl"], color="tab:green", lw=1.5)
    right.set_xlabel("gradient step")
    right.set_ylabel("mean KL (nats)")
    right.set_title("KL trajectory")
    return encode(fig)


def kl_bars(kl: list[float], active: list[bool]) -> str:
    """Mean KL per latent dimension; inactive dimensions (collapsed to the prior) in grey."""
    fig = Figure(figsize=(max(4.8, 0.5 * len(kl) + 2), 3.2))
    ax = fig.subplots()
    colours = ["tab:blue" if a else "0.6" for a in active]
    ax.bar(np.arange(1, len(kl) + 1), kl, color=colours)
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("KL[q(z_j|x) ‖ N(0,1)] (nats)")
    ax.set_title("KL per dimension (grey: inactive)")
    ax.set_xticks(np.arange(1, len(kl) + 1))
    return encode(fig)


def q_vs_posterior(parts: dict) -> str:
    """The library's :func:`~pyrovae.posterior.figures.plot_q_vs_posterior` for up to six points."""
    from pyrovae.posterior.figures import plot_q_vs_posterior

    target = parts["target"]
    fig = plot_q_vs_posterior(parts["q_loc"], parts["q_scale"], parts["reference"], observed=target.observed, max_panels=6)
    return encode(fig, layout=False)  # plot_q_vs_posterior lays itself out


def data_vs_samples(data, samples, condition_dim: int) -> str:
    """The data beside the model's samples: the first two modelled columns after the ``condition_dim``
    conditioning ones (y against x₁ for one response column; a histogram for one unconditional column)."""
    data, samples = data.detach().double().cpu().numpy(), samples.detach().double().cpu().numpy()
    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, values, title in ((axes[0], data, "data"), (axes[1], samples, "model samples")):
        cols = values[:, condition_dim:]
        if cols.shape[1] >= 2:
            ax.scatter(cols[:, 0], cols[:, 1], s=3, alpha=0.5)
            ax.set_xlabel("y₁" if condition_dim else "column 1")
            ax.set_ylabel("y₂" if condition_dim else "column 2")
        elif condition_dim:
            ax.scatter(values[:, 0], cols[:, 0], s=3, alpha=0.5)
            ax.set_xlabel("x₁")
            ax.set_ylabel("y")
        else:
            ax.hist(cols[:, 0], bins=40, color="tab:blue", alpha=0.8)
            ax.set_xlabel("column 1")
        ax.set_title(title)
    return encode(fig)
