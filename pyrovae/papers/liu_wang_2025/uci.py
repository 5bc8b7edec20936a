r"""Liu & Wang (2025) Table 4 (``liu-table4``): test log-likelihood of the calibrated σ-CVAE on six UCI
regression sets (Sec. 5.3).

Per data set and repetition: a random 75 % / 25 % train/test split (seed per repetition);
x and y standardised with the training part's mean and SD; the σ-CVAE of App. F's Sec. 5.2
set-up (tanh, latent 5, encoder [32, 16, 8, 4], decoder [8, 32, 16, 4]; the paper does not
give its UCI networks) trained by Algorithm 1 (K = 25, C = 0.05, σ₀ = 1, full batch); then the
mean over test points of :math:`\log p(y \mid x)` by importance sampling
(:func:`pyrovae.metrics.vae_log_likelihood`: proposal = the encoder's Gaussian with its variance
inflated × 2, S = 5,000 draws per point), converted to the original units of y by subtracting
:math:`\sum_j \log s_j` (the training SDs of the response columns). Mean ± sd over repetitions.

``boston`` and ``concrete`` load from optional packages; ``energy``, ``power``, ``wine-red``
and ``yacht`` from the UCI files in ``$PYROVAE_UCI_DIR`` (see :mod:`pyrovae.data.uci`). A data
set that cannot be loaded is skipped and the table says why.

Settings (``--set KEY=VALUE``): ``max_steps`` (2,000 with ``--quick``, else 20,000), ``S`` (importance
draws per test point, 5,000), ``datasets`` (comma-separated, any of :data:`DATASETS`; all six by
default) and ``calibration`` (``paper``: Algorithm 1, the default and the paper's; ``code``: the
authors' public code; ``robust``: our variant, :mod:`pyrovae.inference.robust_calibration`, which has
no C).
"""

from __future__ import annotations

import time

import torch

from pyrovae.data.transforms import Standardizer, train_test_split
from pyrovae.data.uci import UCI_DATASETS, load_uci
from pyrovae.errors import ConfigError, DataError
from pyrovae.experiments.registry import ExperimentOptions, register, trains_on_device
from pyrovae.experiments.results import ExperimentReport, ResultTable, summarize_values
from pyrovae.experiments.runner import map_tasks
from pyrovae.experiments.tasks import CVAESettings, fit_cvae
from pyrovae.inference.robust_calibration import CALIBRATIONS
from pyrovae.metrics.likelihood import vae_log_likelihood
from pyrovae.runs import derive_seeds
from pyrovae.validation import text

__all__ = ["table4", "run_split", "unavailable", "PAPER_TABLE4"]

DATASETS = ("boston", "concrete", "energy", "power", "wine-red", "yacht")
PAPER_TABLE4 = {  # nats, mean ± (the paper's) spread over 5 splits
    "CVAE (ours)": {"boston": "-3.17 ± 0.07", "concrete": "-3.48 ± 0.04", "energy": "+0.22 ± 0.10",
                    "power": "-3.29 ± 0.03", "wine-red": "-1.48 ± 0.06", "yacht": "-0.34 ± 0.02"},
    "NF-5": {"boston": "-2.37 ± 0.04", "concrete": "-2.97 ± 0.03", "energy": "-0.67 ± 0.15",
             "power": "-2.68 ± 0.01", "wine-red": "-0.76 ± 0.10", "yacht": "-0.21 ± 0.09"},
    "HMC": {"boston": "-2.27 ± 0.03", "concrete": "-2.72 ± 0.02", "energy": "-0.93 ± 0.01",
            "power": "-2.70 ± 0.00", "wine-red": "-0.91 ± 0.02", "yacht": "-1.62 ± 0.02"},
    "MDN-5": {"boston": "-2.73 ± 0.04", "concrete": "-3.28 ± 0.03", "energy": "-1.63 ± 0.06",
              "power": "-2.70 ± 0.01", "wine-red": "+1.43 ± 0.07", "yacht": "-2.54 ± 0.10"},
}


def run_split(name: str, seed: int, max_steps: int, num_samples: int, directory: str | None = None,
              device: str = "cpu", calibration: str = "paper") -> dict:
    """One repetition on one data set: train on 75 %, mean test log-likelihood (nats, original units)."""
    start = time.perf_counter()
    data = load_uci(name, directory=directory)
    train, test = train_test_split(data, 0.25, seed=seed)
    scaler = Standardizer.fit(train)
    result = fit_cvae(scaler.transform(train), CVAESettings(max_steps=max_steps, calibration=calibration), seed=seed,
                      device=device)
    test_s = scaler.transform(test)
    result.model.eval()
    with torch.no_grad():
        ll, diag = vae_log_likelihood(result.model, test_s.condition, test_s.observed, num_samples=num_samples, inflation=2.0,
                                      seed=seed, return_diagnostics=True)
    ll = ll - scaler.log_jacobian
    return {"dataset": name, "seed": seed, "n": len(data), "p": data.condition_dim, "q": data.observed_dim,
            "loglik": float(ll.mean()), "ess_median": float(diag.ess.median()), "sigma": result.metrics["sigma"],
            "kl": result.metrics["kl"], "calibrations": result.metrics["calibrations"],
            "steps": result.metrics["steps"], "status": result.status, "calibration": calibration,
            "wall_time": time.perf_counter() - start}


def unavailable(datasets) -> dict[str, str]:
    """Why each of ``datasets`` that cannot be loaded on this machine cannot (a package or a file is
    missing). Decided before any task is built, so a skipped set is never stored as a finished task:
    once the package or file is there, a rerun of the same command runs it."""
    why = {}
    for name in datasets:
        try:
            load_uci(name)
        except DataError as exc:
            why[name] = str(exc)
    return why


def _datasets(names) -> tuple[str, ...]:
    """The ``datasets`` setting: Table 4's columns to run, each once, in the order given."""
    unknown = [d for d in names if d not in DATASETS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(f"--set datasets: expected distinct names among {', '.join(DATASETS)}, "
                          f"got {', '.join(names)}")
    return tuple(names)


@register("liu-table4", "Liu & Wang (2025) Table 4: test log-likelihood on UCI regression sets",
          "Liu & Wang (2025), Table 4",
          full="5 random 75/25 splits, at most 20,000 steps, 5,000 importance samples")
@trains_on_device
def table4(options: ExperimentOptions) -> ExperimentReport:
    st = options.configure(dict(max_steps=2000 if options.quick else 20_000, S=5000, datasets=DATASETS,
                                calibration="paper"))
    max_steps, num_samples, datasets = st["max_steps"], st["S"], _datasets(st["datasets"])
    calibration = text("--set calibration", st["calibration"], CALIBRATIONS, "calibration variant")
    reps = options.repetitions(quick=2, full=5)
    seeds = derive_seeds(options.seed, reps)
    skipped = {} if options.stored_only else unavailable(datasets)  # stored-only: every data set's tasks are read
    tasks = [dict(name=d, seed=s, max_steps=max_steps, num_samples=num_samples, device=options.device)
             | ({} if calibration == "paper" else {"calibration": calibration})  # paper: tasks stored before it existed
             for d in datasets if d not in skipped for s in seeds]
    start = time.perf_counter()
    rows = map_tasks(run_split, tasks, options)
    table = ResultTable("table4", "Mean test log-likelihood (nats, original units of y), mean ± sd over splits",
                        ["CVAE (ours)", "N", "p/q"] + [m for m in PAPER_TABLE4 if m != "CVAE (ours)"],
                        list(datasets))
    for d in datasets:
        runs = [r for r in rows if r["dataset"] == d]
        if d in skipped:
            table.set("CVAE (ours)", d, "skipped", PAPER_TABLE4["CVAE (ours)"][d])
            spec = UCI_DATASETS[d]
            table.set("N", d, f"({spec.n})")
            table.set("p/q", d, f"({spec.p}/{spec.q})")
        else:
            table.set("CVAE (ours)", d, summarize_values([r["loglik"] for r in runs]), PAPER_TABLE4["CVAE (ours)"][d])
            table.set("N", d, str(runs[0]["n"]), str(UCI_DATASETS[d].n))
            table.set("p/q", d, f"{runs[0]['p']}/{runs[0]['q']}")
        for method in PAPER_TABLE4:
            if method != "CVAE (ours)":
                table.set(method, d, "—", PAPER_TABLE4[method][d])
    trained_by = {"paper": "Algorithm 1 (C = 0.05)", "code": "the authors' public code's calibration (C = 0.05)",
                  "robust": "our robust calibration (not the paper's)"}[calibration]
    table.note = (f"CVAE trained by {trained_by}. Proposal: encoder Gaussian, variance × 2, S = {num_samples} draws per test point; log-likelihood of "
                  "standardised y minus Σ log sd(y_train). Rows NF-5, HMC, MDN-5: the paper's numbers only. "
                  + " ".join(f"{d} skipped: {why}." for d, why in skipped.items()))
    diag = ResultTable("table4_cvae", "CVAE diagnostics (standardised units): σ, KL, calibrations, steps, "
                       f"median importance ESS (of {num_samples})", [d for d in datasets if d not in skipped],
                       ["σ", "KL", "calibrations", "steps", "ESS median", "wall time (s)"])
    for d in diag.rows:
        runs = [r for r in rows if r["dataset"] == d]
        for col, key in (("σ", "sigma"), ("KL", "kl"), ("calibrations", "calibrations"), ("steps", "steps"),
                         ("ESS median", "ess_median"), ("wall time (s)", "wall_time")):
            diag.set(d, col, summarize_values([r[key] for r in runs]))
    ran = [d for d in datasets if d not in skipped]
    return ExperimentReport(
        {"reps": reps, "max_steps": max_steps, "S": num_samples, "calibration": calibration, "proposal variance inflation": 2,
         "data sets run": ", ".join(ran) or "none", "root_seed": options.seed},
        [table, diag], wall_time=time.perf_counter() - start,
    )
