r"""Yacoby, Pan & Doshi-Velez (2021), App. D / E.3: the effect of γ (weight of the labelled bound) and α (weight of the
discriminator :math:`\log q(y|x)`) in Eq. 5 on the MFG M2 model (``vae``: factorised guide, Eq. 13).

The paper's reading (E.3): "γ still controls the trade-off between realistic data and realistic
counterfactuals; in the continuous case, α *additionally* controls the trade-off between realistic
counterfactuals and predictive accuracy" — a larger γ should keep :math:`f_\theta(\cdot, y)` apart
(better cohorts, worse :math:`p(x)`), a larger α on the continuous set should raise predictive
accuracy and collapse :math:`f_\theta`.

Grid (App. D: α ∈ {0, 0.1, 1}, γ ∈ {0.5, 1, 2, 5}): ``--quick`` sweeps γ at α = 1 on the discrete set
and α at γ = 1 on the continuous set; the full setting runs the whole grid on both. Every run is
:func:`pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles.fit_m2_semicircles` (ground-truth initialisation, then
joint training; every cell's starts of one data set and version train as one batch, γ and α per model).
``--set kinds=discrete`` (or ``continuous``) runs one semi-circle's cells only, as the same tasks as the whole sweep.
"""

from __future__ import annotations

import time

from pyrovae.errors import ConfigError
from pyrovae.experiments.registry import ExperimentOptions, register
from pyrovae.experiments.results import ExperimentReport, ResultTable, summarize_values
from pyrovae.experiments.runner import map_tasks, slug
from pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles import (
    ALPHAS, COHORTS, FULL_PROTOCOL, GAMMAS, _seeds, fit_m2_semicircles, m2_settings, select_m2)
from pyrovae.runs import write_json

__all__ = ["run_sweep", "sweep_grid"]


def sweep_grid(quick: bool) -> list[tuple[str, float, float]]:
    """``(kind, gamma, alpha)`` cells."""
    if quick:
        return [("discrete", g, 1.0) for g in GAMMAS] + [("continuous", 1.0, a) for a in ALPHAS]
    return [(k, g, a) for k in ("discrete", "continuous") for g in GAMMAS for a in ALPHAS]


def run_sweep(options: ExperimentOptions, settings: dict, grid: list[tuple[str, float, float]]) -> ExperimentReport:
    start = time.perf_counter()
    reps = options.repetitions(2, 5)
    seeds = _seeds(options.seed, reps)
    settings = {k: v for k, v in settings.items() if k != "grid"}  # the sweep is its own grid
    starts = settings.pop("starts", ("gt",))
    # one task per data set and version: every (γ, α) cell's starts train as one batch (γ and α per model)
    cells = {k: [(g, a) for (kk, g, a) in grid if kk == k] for k in dict.fromkeys(k for k, _, _ in grid)}
    tasks = [dict(kind=k, method="vae", version=v, seeds=[seeds[v] + 7919 * j for _ in cs for j in range(len(starts))],
                  inits=[init for _ in cs for init in starts], gamma=[g for g, _ in cs for _ in starts],
                  alpha=[a for _, a in cs for _ in starts],
                  checkpoint_dir=str(options.out / "checkpoints" / slug(f"{k} v{v}")), **settings)
             for k, cs in cells.items() for v in range(reps)]
    results = [r for batch in map_tasks(fit_m2_semicircles, tasks, options) for r in batch]
    options.out.mkdir(parents=True, exist_ok=True)
    write_json(options.out / "runs.json", results)
    rows = [f"{k} / γ={g:g} / α={a:g}" for (k, g, a) in grid]
    cols = ["S-kNN p(x)", "S-kNN cohort 1", "S-kNN cohort 2", "collapse score", "q(y|x) acc. / RMSE"]
    keys = ["knn_px", "knn_cohort1", "knn_cohort2", "collapse", "q_y"]
    table = ResultTable("m2_sweep", "MFG M2 (vae) against γ and α (smooth kNN: lower is better; collapse 0 = f ignores y)",
                        rows, cols, note=(f"smooth kNN α = 1 on {settings['n_eval']} points a side; q(y|x): "
                                          "accuracy (discrete) / RMSE (continuous) on test points."))
    for row, (k, g, a) in zip(rows, grid):
        # per version the start with the lowest validation -J (one candidate: only restarts are selected here)
        _, rs = select_m2({"": [r for r in results if (r["kind"], r["gamma"], r["alpha"]) == (k, g, a)]},
                          list(range(reps)))
        for col, key in zip(cols, keys):
            table.set(row, col, summarize_values([r[key] for r in rs]))
    report_settings = {**settings, "reps": reps, "root_seed": options.seed, "starts": list(starts),
                       "method": "vae (factorised guide)"}
    return ExperimentReport(report_settings, [table],
                            wall_time=time.perf_counter() - start,
                            conclusion="Paper: larger γ → less functional collapse (better cohorts); larger α on the "
                                       "continuous set → better q(y|x), more collapse.")


@register("yacoby-m2-sweep", "Yacoby, Pan & Doshi-Velez (2021) App. D/E.3: γ and α sweeps of the semi-supervised MFG M2 model",
          "Yacoby, Pan & Doshi-Velez (2021), App. D, App. E.3", full=FULL_PROTOCOL.format(
              grid="; every cell of α ∈ {0, 0.1, 1} × γ ∈ {0.5, 1, 2, 5} on both semi-circles reported (no "
                   "hyper-parameter selection: the sweep is the result), per version the start with the best "
                   "validation objective"))
def m2_sweep(options: ExperimentOptions) -> ExperimentReport:
    settings = options.configure({**m2_settings(options), "kinds": list(COHORTS)})
    kinds = settings.pop("kinds")  # --set kinds=discrete: one semi-circle's cells (the same tasks as the whole sweep's)
    unknown = sorted(set(kinds) - set(COHORTS))
    if unknown:
        raise ConfigError(f"--set kinds: unknown semi-circle {unknown[0]!r}; known: {', '.join(COHORTS)}")
    report = run_sweep(options, settings, [cell for cell in sweep_grid(options.quick) if cell[0] in kinds])
    report.settings["kinds"] = list(kinds)
    return report
