r"""Berger & Sebag (2020) Table 1 (``berger-table1``) on the artificial 2-D data of §4.1 (our formula:
:mod:`pyrovae.data.manifolds`): the ELBO of F-VAEs with σ ∈ {1, 0.3, 0.1, 0.043, 0.03, 0.01},
LS-VAE (learned scalar σ from 1), LV-VAE (σ(z) per output, Eq. 11, as a second output head of the
decoder: the paper's "learned vector σ(z), as an output of the decoder network", §4.1), F*-VAE (σ fixed
at each LS-VAE run's final σ) and the replay of App. A.2 (an F-VAE following each LS-VAE run's recorded σ
block by block). ResNet encoder and decoder, 100 fresh points per batch.

One row is ours, not the paper's: "LV-VAE, separate σ network", the same likelihood with σ(z) from a
separate two-layer tanh network of z (half the decoder's width) that shares nothing with the mean. It
was this experiment's LV-VAE before the head; it stays as the contrast that says whether sharing the
decoder's features is what moves the LV-VAE row. The runs train as batched programs on ``--device``, one
per row (10 runs each at ``--full``), and each computes the run its seed
would give alone on that device, up to float rounding. The ELBO is the full
Gaussian one, ``D log σ`` and ``(D/2) log 2π`` included, in nats per point, estimated on fresh
test points; the data's own expected log-density (by quadrature) bounds it from above.
Figures like Fig. 4 (reconstruction, generation) and Fig. 10 (σ along training).

The paper's numbers are transcribed from its Table 1 for comparison only.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from pyrovae.experiments.registry import ExperimentOptions, register, trains_on_device
from pyrovae.experiments.results import ExperimentReport, ResultTable, summarize_values
from pyrovae.experiments.runner import map_tasks, set_aside_diverged, slug
from pyrovae.plots import save_figure
from pyrovae.runs import derive_seeds


__all__ = ["table1", "table1_tasks", "second_phase_tasks", "TABLE1_SIGMAS", "PAPER_TABLE1"]

TABLE1_SIGMAS = (1.0, 0.3, 0.1, 0.043, 0.03, 0.01)
#: our extra row: the LV-VAE likelihood with σ(z) from a separate network instead of the decoder's head
LV_NETWORK = "LV-VAE, separate σ network"
REPLAY = "F-VAE, replayed LS σ (App. A.2)"
PAPER_TABLE1 = {
    "F-VAE σ=1": "-1.14 ± 0.02", "F-VAE σ=0.3": "-0.063 ± 0.03", "F-VAE σ=0.1": "0.773 ± 0.09",
    "F-VAE σ=0.043": "0.335 ± 0.08", "F-VAE σ=0.03": "0.141 ± 0.10", "F-VAE σ=0.01": "-0.961 ± 0.12",
    "LS-VAE": "1.26 ± 0.09", "LV-VAE": "1.62 ± 0.08", LV_NETWORK: "(not in the paper)",
    "F*-VAE": "0.335 ± 0.08 (its σ = 0.043 row)",
    REPLAY: "same as LS-VAE (text)",
}
PAPER_SIGMA = {"LS-VAE": "0.043"}


def _slug(label: str) -> str:
    return slug(label.replace("σ", "s").replace("*", "star"))


def _build_berger_model(task: dict):
    from pyrovae.models import FixedNoise, HeadNoise, LearnedNoise, NetworkNoise, ScheduledNoise
    from pyrovae.models.architectures import resnet_vae

    kind = task["noise"]
    latent = task["latent_dim"]
    if kind == "fixed":
        noise = FixedNoise(task["sigma"])
    elif kind == "learned":
        noise = LearnedNoise(1.0)
    elif kind == "head":  # reads the residual decoder's last hidden layer, width units
        noise = HeadNoise(task["width"], 2, sigma=1.0)
    elif kind == "network":
        noise = NetworkNoise(latent, 2, sigma=1.0, widths=(task["width"] // 2,) * 2)
    elif kind == "scheduled":
        noise = ScheduledNoise(task["schedule"])
    else:  # pragma: no cover - tasks are built below
        raise ValueError(kind)
    return resnet_vae(0, 2, latent, width=task["width"], blocks=task["blocks"], noise=noise)


def _train_berger(**task) -> list[dict]:
    """A batch of Table 1 runs of one noise kind (``task["noise"]``), one per entry of ``task["runs"]`` (its
    ``label``, ``rep``, ``seed`` and, for fixed or replayed σ, its own ``sigma`` or ``schedule``), trained as one
    batched program (:class:`~pyrovae.inference.trainer.Trainer` with a list of models) on ``task["device"]``:
    each starts from the weights and stream of the run seeded ``seed`` alone (``pyro.set_rng_seed``, the model,
    then the stream's seed from torch's generator, as the trainer draws it for one run), so it computes that run
    on the same device up to float rounding (a GPU's generators draw other numbers than the CPU's). Then, on the
    CPU, each run's ELBO on fresh test points and, for ``rep == 0``, the figures' point clouds."""
    import pyro
    import torch

    from pyrovae.data.manifolds import berger_manifold
    from pyrovae.inference.algorithms import FixedSigma, JointSVI, ReplaySigma
    from pyrovae.inference.trainer import Trainer, TrainSettings

    data = berger_manifold(n=task["n_eval"], seed=task["data_seed"])
    models, streams = [], []
    for run in task["runs"]:
        pyro.set_rng_seed(run["seed"])
        models.append(_build_berger_model({**task, **run}).to(task["device"]))
        streams.append(int(torch.randint(0, 2**62, ())))
    algorithm = {"fixed": FixedSigma, "learned": JointSVI, "head": JointSVI, "network": JointSVI,
                 "scheduled": ReplaySigma}[task["noise"]]
    settings = TrainSettings(K=task["K"], lr=task["lr"], max_steps=task["steps"], tol=0.0, batch_size=task["batch"],
                             checkpoint_every=max(1, 1000 // task["K"]))  # every 1,000 steps: resumable across sessions
    with pyro.validation_enabled(False):
        results = Trainer(models, data, [algorithm() for _ in models], settings, run_dir=task.get("checkpoint_dir"),
                          seeds=streams).run()
    return [_evaluate_berger(task, run, result.model.to("cpu"), result) for run, result in zip(task["runs"], results)]


def _evaluate_berger(task: dict, run: dict, model, result) -> dict:
    """One trained run's row: its ELBO (10 draws of the encoder) on ``n_test`` fresh points; for ``rep == 0`` the
    figures' point clouds (and, for the LS-VAE, the data's own expected log-density)."""
    import torch

    from pyrovae.data.manifolds import berger_log_density, berger_sample

    gen = torch.Generator().manual_seed(task["data_seed"] + 1)
    y_test, _ = berger_sample(task["n_test"], gen)
    x_test = torch.zeros(len(y_test), 0)
    torch.manual_seed(run["seed"] + 7)
    with torch.no_grad():
        draws = [model.terms(x_test, y_test) for _ in range(10)]
        recon = torch.stack([d["recon"] for d in draws]).mean(0)
        kl = torch.stack([d["kl"] for d in draws]).mean(0)
        out: dict[str, Any] = {
            "label": run["label"], "rep": run["rep"], "seed": run["seed"], "status": result.status,
            "elbo": float(-(recon + kl).mean()), "recon": float(recon.mean()), "kl": float(kl.mean()),
            "sigma": model.sigma, "steps": int(result.history["step"].iloc[-1]) if len(result.history) else 0,
            "wall_time": result.metrics["wall_time"],
            "history_sigma": result.history["sigma"].tolist(), "history_step": result.history["step"].tolist(),
            "history_elbo": (-result.history["neg_elbo"]).tolist(),
        }
        if run["rep"] == 0 and run["label"] == "LS-VAE":
            out["data_log_density"] = float(berger_log_density(y_test).mean())
        if run["rep"] == 0:
            m = min(600, len(y_test))
            pts, x0 = y_test[:m], x_test[:m]
            loc, scale = model.encode(x0, pts)
            out["fig_data"] = pts.tolist()
            out["fig_recon"] = model.decode(x0, loc + scale * torch.randn_like(loc)).tolist()
            mean, sigma = model.mean_and_scale(x0, torch.randn(m, model.latent_dim))
            out["fig_gen_mean"] = mean.tolist()
            out["fig_gen"] = (mean + sigma * torch.randn_like(mean)).tolist()
    return out


def _table1_settings(options: ExperimentOptions) -> dict:
    if options.quick:
        return dict(width=64, blocks=2, latent_dim=2, steps=6000, K=100, lr=2e-3, batch=100, n_eval=1000, n_test=2000)
    return dict(width=200, blocks=4, latent_dim=2, steps=30_000, K=250, lr=1e-3, batch=100, n_eval=2000, n_test=10_000)


def _batch(settings: dict, noise: str, name: str, runs: list[dict], root_seed: int, out: Path | None,
           device: str) -> dict:
    folder = _slug(name) if device == "cpu" else f"{slug(device)}/{_slug(name)}"  # a checkpoint resumes on its device
    return dict(settings, noise=noise, runs=runs, data_seed=root_seed, device=device,
                checkpoint_dir=None if out is None else str(out / folder))


def table1_tasks(settings: dict, reps: int, root_seed: int, out: Path | None, device: str = "cpu") -> list[dict]:
    """Phase 1 of Table 1, paired by seed across methods, as nine batches: each fixed σ's runs, the LS-VAE's, the
    LV-VAE's and the separate-σ-network row's. One batch per row, not one stack of all six fixed σ: a batch of
    ``reps`` runs at ``--full`` ends within about an hour on one core, so its stored result (a few hundred kB of
    JSON) can be kept, and a protocol run of several hours goes on across sessions and machines."""
    seeds = [int(s) for s in derive_seeds(root_seed, reps)]
    def runs(label: str, **kw) -> list[dict]:
        return [dict(label=label, rep=i, seed=seeds[i], **kw) for i in range(reps)]
    fixed = [_batch(settings, "fixed", f"F-VAE σ={s:g}", runs(f"F-VAE σ={s:g}", sigma=s), root_seed, out, device)
             for s in TABLE1_SIGMAS]
    return [*fixed,
            _batch(settings, "learned", "LS-VAE", runs("LS-VAE"), root_seed, out, device),
            _batch(settings, "head", "LV-VAE", runs("LV-VAE"), root_seed, out, device),
            _batch(settings, "network", LV_NETWORK, runs(LV_NETWORK), root_seed, out, device)]


def second_phase_tasks(settings: dict, ls_runs: list[dict], root_seed: int, out: Path | None,
                       device: str = "cpu") -> list[dict]:
    """Phase 2, one batch each: F*-VAE (σ fixed at each LS-VAE run's final σ) and the App. A.2 replay of its σ.
    An LS-VAE run that diverged has neither (its σ path ends early; it is left out of the table). The replayed
    schedules are padded to one length with their last σ (which a schedule keeps past its end anyway), so that
    they stack."""
    ls_runs = [run for run in ls_runs if run["status"] != "nan"]
    if not ls_runs:
        return []
    fstar = [dict(label="F*-VAE", rep=r["rep"], seed=r["seed"], sigma=r["sigma"]) for r in ls_runs]
    blocks = max(len(r["history_sigma"]) for r in ls_runs)
    replay = [dict(label=REPLAY, rep=r["rep"], seed=r["seed"],
                   schedule=[1.0] + r["history_sigma"] + r["history_sigma"][-1:] * (blocks - len(r["history_sigma"])))
              for r in ls_runs]
    return [_batch(settings, "fixed", "F*-VAE", fstar, root_seed, out, device),
            _batch(settings, "scheduled", REPLAY, replay, root_seed, out, device)]


@register("berger-table1", "Berger & Sebag (2020) Table 1: fixed, learned scalar and learned σ(z) on the 2-D "
          "manifold",
          "Berger & Sebag (2020), Table 1, Figs. 4 and 10, App. A.2",
          full="ResNet of 4 blocks × 200, fresh batches of 100, 30,000 steps, 10 runs")
@trains_on_device
def table1(options: ExperimentOptions) -> ExperimentReport:
    settings = options.configure(_table1_settings(options))
    reps = options.repetitions(quick=1, full=10)
    start = time.perf_counter()
    runs_dir = options.out / "runs"
    first = [run for batch in map_tasks(_train_berger, table1_tasks(settings, reps, options.seed, runs_dir,
                                                                   options.device), options) for run in batch]
    ls_runs = [r for r in first if r["label"] == "LS-VAE"]
    second = [run for batch in map_tasks(_train_berger, second_phase_tasks(settings, ls_runs, options.seed, runs_dir,
                                                                           options.device), options) for run in batch]
    runs = [set_aside_diverged(r, f"{r['label']}/rep-{r['rep']:02d}", options.diverged) for r in first + second]
    rows = [f"F-VAE σ={s:g}" for s in TABLE1_SIGMAS] + ["LS-VAE", "LV-VAE", LV_NETWORK, "F*-VAE",
                                                         REPLAY]
    by_label = {row: [r for r in runs if r["label"] == row] for row in rows}
    bound = next((r["data_log_density"] for r in runs if "data_log_density" in r), math.nan)
    table = ResultTable(
        "table1", "ELBO per point (nats, D log σ and (D/2) log 2π included; mean ± sd over runs)", rows,
        ["ELBO", "final σ", "KL", "status"],
        note=(f"Upper bound: the data's own expected log-density E log p(y) = {bound:.3f} nats (quadrature). "
              "The paper's ELBOs come from its own (unpublished) data formula and constants, so only the "
              "ordering of the rows is comparable. LV-VAE's σ(z) is a second output head of the decoder (the "
              f"paper's); {LV_NETWORK!r} (ours) takes it from a separate network of z. Their σ is the geometric "
              "mean of σ(z) over the evaluation points."))
    for row in rows:
        rr = by_label[row]
        table.set(row, "ELBO", summarize_values([r["elbo"] for r in rr]), PAPER_TABLE1.get(row))
        table.set(row, "final σ", summarize_values([r["sigma"] for r in rr]), PAPER_SIGMA.get(row))
        table.set(row, "KL", summarize_values([r["kl"] for r in rr]))
        table.set(row, "status", ", ".join(sorted({r["status"] for r in rr})))
    figures = _table1_figures(runs, rows, options.out)
    conclusion = _table1_conclusion(by_label)
    return ExperimentReport(
        {"reps": reps, **settings, "sigmas": list(TABLE1_SIGMAS), "root_seed": options.seed, "jobs": options.jobs,
         "device": options.device},
        [table], figures=figures, wall_time=time.perf_counter() - start, conclusion=conclusion,
    )


def _table1_conclusion(by_label: dict[str, list[dict]]) -> str:
    mean = {k: float(np.nanmean([r["elbo"] for r in v])) for k, v in by_label.items()
            if any(math.isfinite(r["elbo"]) for r in v)}
    fixed = {k: v for k, v in mean.items() if k.startswith("F-VAE σ=")}
    best_fixed = max(fixed, key=fixed.get)
    ls, lv = mean["LS-VAE"], mean["LV-VAE"]
    parts = [f"LS-VAE ELBO {ls:.3f} vs best fixed σ ({best_fixed}) {fixed[best_fixed]:.3f}: "
             + ("LS-VAE beats every fixed σ, as Table 1 reports." if ls > fixed[best_fixed]
                else "LS-VAE does NOT beat every fixed σ here, unlike Table 1.")]
    parts.append(f"LV-VAE {lv:.3f} " + ("> LS-VAE, as in the paper." if lv > ls else "≤ LS-VAE, unlike the paper."))
    if LV_NETWORK in mean:
        parts.append(f"With σ(z) from a separate network instead of the decoder's head: {mean[LV_NETWORK]:.3f}.")
    fstar, replay = mean.get("F*-VAE"), mean.get(REPLAY)
    if fstar is not None:
        parts.append(f"F*-VAE {fstar:.3f} " + ("< LS-VAE (the trajectory matters, as the paper says)."
                                                 if fstar < ls else "≥ LS-VAE (unlike the paper)."))
    if replay is not None:
        parts.append(f"Replayed σ schedule {replay:.3f} vs LS-VAE {ls:.3f} (the paper: the same).")
    return " ".join(parts)


def _table1_figures(runs: list[dict], rows: list[str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = [r for r in runs if "fig_data" in r]
    order = [r for row in rows for r in figs if r["label"] == row]
    paths = []
    if order:
        fig, axes = plt.subplots(len(order), 2, figsize=(7.0, 2.3 * len(order)), squeeze=False)
        for ax_row, run in zip(axes, order):
            data = np.asarray(run["fig_data"])
            rec, gen, gen_mean = (np.asarray(run[k]) for k in ("fig_recon", "fig_gen", "fig_gen_mean"))
            ax_row[0].scatter(*data.T, s=3, c="tab:blue", label="data")
            ax_row[0].scatter(*rec.T, s=3, c="tab:orange", label="reconstruction (mean)")
            ax_row[1].scatter(*data.T, s=3, c="tab:blue", alpha=0.3, label="data")
            ax_row[1].scatter(*gen.T, s=3, c="tab:green", label="generated")
            ax_row[1].scatter(*gen_mean.T, s=3, c="tab:orange", label="mean of p(x|z)")
            ax_row[0].set_ylabel(f"{run['label']}\nELBO {run['elbo']:.2f}", fontsize=8)
            for ax in ax_row:
                ax.set_xlim(-2.6, 2.6)
                ax.set_ylim(-1.6, 1.6)
                ax.tick_params(labelsize=6)
        axes[0][0].set_title("reconstruction (Fig. 4, left)", fontsize=9)
        axes[0][1].set_title("generation (Fig. 4, right)", fontsize=9)
        axes[0][0].legend(fontsize=6, markerscale=3, loc="lower right")
        axes[0][1].legend(fontsize=6, markerscale=3, loc="lower right")
        paths.append(save_figure(fig, out / "fig4_reconstruction_generation.png"))
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    styles = {"LS-VAE": ("tab:blue", "-"), REPLAY: ("tab:red", "--"),
              "LV-VAE": ("tab:green", "-"), LV_NETWORK: ("tab:olive", ":")}
    for label, (color, ls) in styles.items():
        for k, run in enumerate(r for r in runs if r["label"] == label):
            ax.plot(run["history_step"], run["history_sigma"], color=color, ls=ls, lw=1, alpha=0.8,
                    label=label + (" (geometric mean)" if label.startswith("LV-VAE") else "") if k == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("σ")
    ax.set_title("σ along training (Fig. 10)")
    ax.legend(fontsize=7)
    paths.append(save_figure(fig, out / "fig10_sigma_trajectory.png"))
    return paths
