r"""Seed 001, Sec. 7 / App. E.3, Tables 3 and 4: the semi-supervised M2 model on the semi-circles.

For each data set (Discrete / Continuous Semi-Circle, App. H) and each objective (MFG ELBO — the
"VAE" column — and IWAE), train M2 (:mod:`pyrovae.models.m2`) and report the smooth kNN statistic
of :math:`p_\theta(x)` against held-out data (Table 3), of :math:`p_\theta(x|y)` against the true
cohorts (Table 4: y = 0, 1 or y = -3.5, 3.5), the functional-collapse score
(:func:`pyrovae.metrics.semisupervised.functional_collapse`, ~0 = the decoder ignores y) and the
predictive quality of :math:`q(y|x)` on the unlabelled training points.

Simplifications against App. D: random initialisation (not the ground truth), one restart per
repetition, γ = 1 and α = 1 fixed (no hyper-parameter search), discrete y summed exactly (not the
relaxed family), latent dimension 1, S = 10 importance samples, smooth kNN with α = 1 on
``knn_n`` points a side. LIN is not run here.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from pyrovae.data.yacoby_m2 import continuous_semicircle, discrete_semicircle, sample_semicircle_cohort, semicircle_f
from pyrovae.experiments.registry import ExperimentOptions, register
from pyrovae.experiments.results import ExperimentReport, ResultTable, summarize_values
from pyrovae.inference.m2_training import train_m2
from pyrovae.metrics.semisupervised import cohort_knn, functional_collapse, label_accuracy
from pyrovae.metrics.two_sample import smooth_knn_statistic
from pyrovae.models.m2 import M2

__all__ = ["run_m2_cell", "PAPER_TABLE3", "PAPER_TABLE4"]

PAPER_TABLE3 = {("discrete", "iwae"): "0.694 ± 0.096", ("discrete", "elbo"): "0.196 ± 0.078",
                ("continuous", "iwae"): "0.015 ± 0.011", ("continuous", "elbo"): "0.024 ± 0.014"}
PAPER_TABLE4 = {("discrete", "iwae"): ("1.426 ± 1.261", "1.698 ± 0.636"),
                ("discrete", "elbo"): ("15.206 ± 1.200", "11.501 ± 1.300"),
                ("continuous", "iwae"): ("15.951 ± 3.566", "14.416 ± 1.402"),
                ("continuous", "elbo"): ("13.128 ± 0.825", "16.046 ± 1.019")}
COHORTS = {"discrete": (0, 1), "continuous": (-3.5, 3.5)}


def run_m2_cell(kind: str, objective: str, seed: int, settings: dict) -> dict[str, float]:
    """One training run and its metrics."""
    make = discrete_semicircle if kind == "discrete" else continuous_semicircle
    data = make(n=settings["n"], seed=seed)
    test = make(n=settings["knn_n"], seed=seed + 10_000)
    torch.manual_seed(seed)
    model = M2(2, kind, widths=settings["widths"], latent_dim=1, sigma=0.1)
    res = train_m2(model, data, objective, epochs=settings["epochs"], batch_size=settings["batch_size"],
                   lr=settings["lr"], gamma=settings["gamma"], alpha=settings["alpha"],
                   particles=settings["particles"], seed=seed)
    torch.manual_seed(seed + 1)
    xs, _ = model.sample(settings["knn_n"])
    out = {"knn_px": smooth_knn_statistic(xs, test.points).value.item(), "final_loss": res.history[-1]["loss"]}
    for i, y in enumerate(COHORTS[kind]):
        ref = sample_semicircle_cohort(kind, y, settings["knn_n"], seed=seed + 20_000 + i)
        out[f"knn_cohort{i + 1}"] = cohort_knn(model, y, ref, seed=seed + 2)
    y1, y2 = COHORTS[kind]
    out["collapse"] = functional_collapse(model, lambda z, y: semicircle_f(z, y, kind), y1, y2).score
    unl = ~data.labelled
    acc = label_accuracy(model, data.points[unl], data.labels[unl] if kind == "discrete" else data.labels[unl])
    out["q_y"] = acc["accuracy"] if kind == "discrete" else acc["rmse"]
    return out


@register("yacoby-m2", "Seed 001 Tables 3-4: semi-supervised M2 on the semi-circles (functional collapse)",
          "seed 001, Sec. 7, App. E.3, Tables 3-4")
def m2_tables(options: ExperimentOptions) -> ExperimentReport:
    start = time.perf_counter()
    quick = options.quick
    st = dict(n=300 if quick else 5000, epochs=3 if quick else 100, batch_size=100, lr=1e-3 if not quick else 1e-2,
              widths=(16, 16) if quick else (50, 50, 50), gamma=1.0, alpha=1.0, particles=10,
              knn_n=100 if quick else 1000)
    reps = options.repetitions(1, 5)
    seeds = [int(s.generate_state(1)[0] % 2**31) for s in np.random.SeedSequence(options.seed).spawn(reps)]
    rows = [f"{k} / {o}" for k in ("discrete", "continuous") for o in ("elbo", "iwae")]
    cols = ["S-kNN p(x)", "S-kNN cohort 1", "S-kNN cohort 2", "collapse score", "q(y|x) acc. / RMSE", "final loss"]
    table = ResultTable(
        "m2_semicircles", "M2 on the semi-circles: smooth kNN (lower is better), collapse score (0 = f ignores y)",
        rows, cols,
        note=("'elbo' is the MFG VAE (y summed exactly by TraceEnum_ELBO), 'iwae' the IWAE bound of Eq. 14-15 "
              "with the sum over y written out; cohorts: y = 0, 1 (discrete), y = -3.5, 3.5 (continuous); "
              "q(y|x): accuracy (discrete) / RMSE of its mean (continuous) on the unlabelled points."))
    keys = ["knn_px", "knn_cohort1", "knn_cohort2", "collapse", "q_y", "final_loss"]
    for kind in ("discrete", "continuous"):
        for objective in ("elbo", "iwae"):
            results = [run_m2_cell(kind, objective, s, st) for s in seeds]
            row = f"{kind} / {objective}"
            for key, col in zip(keys, cols):
                paper = None
                if key == "knn_px":
                    paper = PAPER_TABLE3[(kind, objective)]
                elif key.startswith("knn_cohort"):
                    paper = PAPER_TABLE4[(kind, objective)][int(key[-1]) - 1]
                table.set(row, col, summarize_values([r[key] for r in results]), paper)
    d_elbo, d_iwae = (table.cells[(f"discrete / {o}", "collapse score")].mean for o in ("elbo", "iwae"))
    conclusion = (f"Collapse score on Discrete Semi-Circle: ELBO {d_elbo:.3f}, IWAE {d_iwae:.3f} "
                  "(the paper: the MFG VAE collapses, f(., 0) ≈ f(., 1); IWAE keeps them apart).")
    if quick:
        conclusion += " --quick: tiny data and few epochs, a smoke run, not a reproduction."
    return ExperimentReport("yacoby-m2", "Seed 001 Tables 3-4: semi-supervised M2 (Yacoby, Pan & Doshi-Velez)",
                            "Yacoby et al., Sec. 7, App. E.3, Tables 3-4", {**st, "widths": list(st["widths"]),
                            "reps": reps, "root_seed": options.seed},
                            [table], wall_time=time.perf_counter() - start, conclusion=conclusion)
