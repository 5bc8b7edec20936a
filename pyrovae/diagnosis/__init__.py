"""``pyrovae diagnose``: every failure mode of the five papers checked on one finished run.

:func:`diagnose` loads a run directory (:mod:`.context`), runs the checks that apply to its model
kind — posterior collapse (:mod:`.collapse`), the decoder σ against its optimum and against the
data-scale threshold (:mod:`.decoder_variance`), q against the true posterior (:mod:`.mismatch`),
the ELBO against the importance-sampled log-likelihood (:mod:`.elbo_gap`), data against samples
(:mod:`.sample_fit`) and, for M2, functional collapse (:mod:`.m2_collapse`) — gives each finding's
remedy the exact ``pyrovae train`` command (:mod:`.remedies`), draws the figures (:mod:`.figures`)
and writes ``diagnosis.json``, ``diagnosis.md`` and a self-contained ``diagnosis.html``
(:mod:`.report`).

Example::

    import pyrovae
    d = pyrovae.diagnose("runs/demo")
    d.verdict, d.top_remedy.command
"""

from __future__ import annotations

import time
from pathlib import Path

from pyrovae.diagnosis.findings import Diagnosis, Finding, Remedy

__all__ = ["diagnose", "Diagnosis", "Finding", "Remedy", "DEFAULT_OUT"]

#: Where the report goes, inside the run directory, unless ``out`` says otherwise.
DEFAULT_OUT = "diagnosis"


def diagnose(run_dir: str | Path, out: str | Path | None = None, *, max_points: int = 2000, seed: int = 0,
             figures: bool = True, write: bool = True) -> Diagnosis:
    """Diagnose the run in ``run_dir``; write the report to ``out`` (default ``RUN_DIR/diagnosis``)
    unless ``write`` is False. The checks use up to ``max_points`` data points drawn with ``seed``."""
    from pyrovae.diagnosis.context import load_context
    from pyrovae.validation import integer_at_least, seed as check_seed

    max_points = integer_at_least("max_points", max_points, 10)
    start = time.perf_counter()
    ctx = load_context(run_dir, max_points, check_seed("seed", seed))
    findings, figs = (_m2_checks if ctx.kind == "m2" else _vae_checks)(ctx, figures)
    _commands(ctx, findings)
    diag = Diagnosis(str(run_dir), ctx.kind, ctx.cfg.to_dict(), findings, 0.0, figs)
    diag.seconds = time.perf_counter() - start
    if write:
        from pyrovae.diagnosis.report import write_report

        write_report(diag, Path(run_dir) / DEFAULT_OUT if out is None else out)
    return diag


def _vae_checks(ctx, figures: bool):
    from pyrovae.diagnosis import figures as fig
    from pyrovae.diagnosis.collapse import check_collapse
    from pyrovae.diagnosis.decoder_variance import check_sigma_optimum, check_sigma_threshold
    from pyrovae.diagnosis.elbo_gap import check_elbo_gap
    from pyrovae.diagnosis.mismatch import check_mismatch
    from pyrovae.diagnosis.references import analytic_sigma, collapse_sigma
    from pyrovae.diagnosis.sample_fit import check_sample_fit

    threshold = collapse_sigma(ctx.condition, ctx.observed, ctx.seed)
    sigma_hat = analytic_sigma(ctx.model, ctx.condition, ctx.observed, seed=ctx.seed)
    collapse = check_collapse(ctx, threshold)
    mismatch, parts = check_mismatch(ctx)
    fit, (data, samples) = check_sample_fit(ctx)
    findings = [collapse, check_sigma_optimum(ctx, sigma_hat), check_sigma_threshold(ctx, threshold), mismatch,
                check_elbo_gap(ctx), fit]
    figs = {}
    if figures:
        figs = {"trajectories": fig.trajectories(ctx.history),
                "kl_bars": fig.kl_bars(collapse.details["kl_per_dimension"], collapse.details["active"]),
                "q_vs_posterior": fig.q_vs_posterior(parts),
                "data_vs_samples": fig.data_vs_samples(data, samples, ctx.condition.shape[1])}
    return findings, {k: v for k, v in figs.items() if v is not None}


def _m2_checks(ctx, figures: bool):
    from pyrovae.diagnosis import figures as fig
    from pyrovae.diagnosis.m2_collapse import check_functional_collapse
    from pyrovae.diagnosis.sample_fit import check_sample_fit

    fit, (data, samples) = check_sample_fit(ctx)
    findings = [check_functional_collapse(ctx), fit]
    figs = {}
    if figures:
        figs = {"trajectories": fig.trajectories(ctx.history), "data_vs_samples": fig.data_vs_samples(data, samples, 0)}
    return findings, {k: v for k, v in figs.items() if v is not None}


def _commands(ctx, findings: list[Finding]) -> None:
    """Each remedy's exact ``pyrovae train`` line; a remedy the run's settings cannot take says why."""
    from pyrovae.diagnosis.remedies import fix_dir, remedy_config, train_command
    from pyrovae.errors import ConfigError

    for f in findings:
        if f.remedy is None:
            continue
        try:
            f.remedy.command = train_command(remedy_config(ctx.cfg, f.remedy), fix_dir(ctx.run_dir, f.remedy),
                                             keep=tuple(f.remedy.changes))
        except ConfigError as exc:
            f.remedy.text += f" (not applicable to this run's settings: {exc})"
            f.remedy.command = ""
