r"""One call from a trained model to ground-truth posteriors, diagnostics, files and figures.

:func:`posterior_report` runs the chosen method on chosen data points of a trained model,
then writes into ``out_dir``:

* ``samples.nc`` — the complete ArviZ object (netCDF; i.i.d. draws for exact and grid):
  posterior, log_likelihood, posterior_predictive, observed_data, constant_data and
  sample_stats in the layout of :mod:`~pyrovae.posterior.arviz_adapter`, ready for ``az.loo``,
  ``az.plot_ppc``, ``az.plot_energy`` (batched HMC) and ``az.plot_pair(divergences=True)``;
* ``diagnostics.csv`` — one row per point and latent: mean, sd, r̂, bulk/tail ESS,
  divergences, :math:`KL[q_\phi \| p_\theta]` (Yacoby, Pan & Doshi-Velez 2021, Eq. 3), the
  grid cross-check for samplers with 1-D/2-D latents, and flags;
* ``diagnostics.json`` — the settings, a summary (worst r̂ and ESS, divergences, flagged
  points, mean KL, aggregate-posterior MMD² against the prior) and per-point KL;
* ``plots/q_vs_posterior.png`` — :math:`q_\phi` beside the true posterior: the sampler's draws
  (with the grid over them when one was computed), the grid, or the exact posterior;
* ``plots/trace.png``, ``plots/rank.png`` — ArviZ's trace and rank plots of the first points.

References:
    Yacoby, Pan & Doshi-Velez, *Failure Modes of Variational Autoencoders and Their Effects on
    Downstream Tasks*, 2021, Eq. 3.
    Yacoby, Pan & Doshi-Velez, *Characterizing and Avoiding Problematic Global Optima of
    Variational Autoencoders*, 2020, App. C (the exact linear-Gaussian posterior).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior.arviz_adapter import diagnostics_summary, diagnostics_table, save_netcdf, to_arviz
from pyrovae.posterior.compare import aggregate_posterior_mmd, posterior_kl
from pyrovae.posterior.crosscheck import grid_crosscheck
from pyrovae.posterior.exact import linearize
from pyrovae.posterior.figures import plot_q_vs_posterior, write_trace_and_rank
from pyrovae.posterior.grid import grid_posterior
from pyrovae.posterior.batched_hmc import batched_hmc
from pyrovae.posterior.nuts import nuts_posterior
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import model_target
from pyrovae import validation
from pyrovae.validation import device as device_name
from pyrovae.validation import integer_at_least

__all__ = ["METHODS", "PosteriorReport", "posterior_report"]

METHODS = ("exact", "grid", "nuts", "hmc")


@dataclass
class PosteriorReport:
    """What :func:`posterior_report` returns: the per-latent table, the summary and the files."""

    method: str
    table: pd.DataFrame
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    samples: PosteriorSamples | None = None
    inference_data: Any = None


def _condition_and_observed(data) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, Dataset):
        return data.condition, data.observed
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1])
    raise DataError("data must be a pyrovae Dataset or a pair (condition, observed)")


def _gaussian_draws(mean: torch.Tensor, cov: torch.Tensor, chains: int, draws: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=mean.device).manual_seed(int(seed))
    eps = torch.randn(chains, draws, *mean.shape, 1, generator=gen, dtype=mean.dtype, device=mean.device)
    return mean + (torch.linalg.cholesky(cov) @ eps).squeeze(-1)


def posterior_report(
    model,
    data,
    method: str = "grid",
    points: int | Sequence[int] | str | None = 20,
    chains: int = 2,
    samples: int = 500,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    warmup: int | None = None,
    seed: int = 0,
    init: str = "encoder",
    num_steps: int = 10,
    grid_limit: float = 9.0,
    grid_resolution: int | None = None,
    crosscheck: bool = True,
    kl_samples: int = 1000,
    plot_points: int = 6,
    dtype: torch.dtype | None = None,
    sampler_options: dict[str, Any] | None = None,
) -> PosteriorReport:
    r"""Ground-truth posteriors of ``model``'s fixed decoder for chosen points of ``data``.

    Args:
        model: a trained Gaussian-decoder model (:class:`~pyrovae.models.cvae.SigmaCVAE`).
        data: a :class:`~pyrovae.data.base.Dataset` or a pair ``(condition, observed)``.
        method: ``"exact"`` (linear decoders only, else :class:`~pyrovae.errors.ConfigError`),
            ``"grid"`` (1-D/2-D latents), ``"nuts"`` (Pyro NUTS, chains one after another) or
            ``"hmc"`` (batched torch HMC).
        points: a count (the first ``k`` points), indices, ``"0,1,2"`` or ``None`` (all).
        chains, samples, warmup: chains and draws per chain (i.i.d. draws for exact/grid);
            ``warmup`` defaults to ``samples``.
        device: ``"cpu"`` or ``"cuda"``.
        out_dir: where to write ``samples.nc``, ``diagnostics.csv/.json`` and ``plots/``
            (``q_vs_posterior.png``, ``trace.png``, ``rank.png``);
            nothing is written when ``None``.
        crosscheck: for ``nuts``/``hmc`` with 1-D or 2-D latents, compare the draws with a grid.
        dtype: float64 on cpu and float32 on cuda by default.
        sampler_options: extra keyword arguments of :func:`~pyrovae.posterior.nuts.nuts_posterior`
            or :func:`~pyrovae.posterior.batched_hmc.batched_hmc` (``max_tree_depth``, ``target_accept_prob``, ...).

    Returns:
        a :class:`PosteriorReport`: the per-latent ``table`` (also ``diagnostics.csv``), the
        ``summary`` (also in ``diagnostics.json``), the ``files`` written, the ``samples`` and
        the complete ``inference_data`` (also ``samples.nc``).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    chains, samples = integer_at_least("chains", chains), integer_at_least("samples", samples)
    warmup = samples if warmup is None else integer_at_least("warmup", warmup, 0)
    seed = validation.seed("seed", seed)
    dev = torch.device(device_name("device", device))
    dtype = dtype or (torch.float32 if dev.type == "cuda" else torch.float64)
    condition, observed = _condition_and_observed(data)
    target = model_target(model, condition, observed, points=points, device=dev, dtype=dtype)
    d = target.latent_dim
    if method == "grid" and d > 2:
        raise ConfigError(f"--method grid needs a 1-D or 2-D latent, this model has {d}; use nuts or hmc")
    t0 = time.perf_counter()
    grid = None
    if method == "exact":
        reference = linearize(target)
        mean, cov = reference.posterior(target.observed)
        draws = _gaussian_draws(mean, cov, chains, samples, seed)
        post = PosteriorSamples({"z": draws}, {}, "exact", list(target.points), {"iid": True})
    elif method == "grid":
        grid = reference = grid_posterior(target, grid_limit, grid_resolution, on_flag="ignore")
        post = grid.sample(chains, samples, seed)
    elif method == "nuts":
        post = reference = nuts_posterior(target, samples, warmup, chains, init=init, seed=seed, **(sampler_options or {}))
    else:
        post = reference = batched_hmc(
            target, samples, warmup, chains, num_steps=num_steps, init=init, seed=seed, **(sampler_options or {})
        )
    wall = time.perf_counter() - t0
    idata = to_arviz(post, target, seed=seed)
    post = post.cpu()

    table = diagnostics_table(idata)
    if method in ("exact", "grid"):  # i.i.d. draws: r̂ and ESS describe the draws, not a sampler
        table["flag_rhat"] = False
        table["flag_ess"] = False
        table["flagged"] = table["flag_divergent"]
    summary = diagnostics_summary(table)

    # grid checks: the grid's own, or the samplers' draws against a grid
    if grid is not None:
        checks = pd.DataFrame(
            {
                "point": grid.points,
                "grid_border_mass": grid.border_mass.cpu().numpy(),
                "grid_resolution_error": grid.resolution_error.cpu().numpy(),
                "flag_grid": grid.flagged().numpy(),
            }
        )
        table = table.merge(checks, on="point", how="left")
    elif method in ("nuts", "hmc") and crosscheck and d <= 2:
        grid = grid_posterior(target, grid_limit, grid_resolution, on_flag="ignore")
        cc = grid_crosscheck(post, grid)
        cols = cc.table[["point", "latent", "grid_mean", "grid_var", "mean_z", "log_var_ratio", "flagged"]]
        table = table.merge(cols.rename(columns={"flagged": "flag_grid"}), on=["point", "latent"], how="left")
        summary["grid_crosscheck_flagged_points"] = cc.flagged_points
        summary["grid_flagged_points"] = [grid.points[i] for i in torch.nonzero(grid.flagged()).flatten().tolist()]
    if "flag_grid" in table:
        table["flagged"] = table["flagged"] | table["flag_grid"].fillna(False).astype(bool)
        summary["flagged_points"] = sorted({int(p) for p in table.loc[table["flagged"], "point"]})

    # the encoder against the true posterior (Yacoby, Pan & Doshi-Velez 2021, Eq. 3) and the aggregate posterior vs the prior
    enc = target.encoder()
    kl = None
    if enc is not None:
        kl = posterior_kl(target, reference, *enc, num_samples=kl_samples, seed=seed)
        table = table.merge(
            kl[["point", "kl", "kl_se"]].rename(columns={"kl": "kl_q_p", "kl_se": "kl_q_p_se"}), on="point", how="left"
        )
        summary["mean_kl_q_p"] = float(kl["kl"].mean())
        summary["kl_source"] = str(kl["source"].iloc[0])
        if hasattr(model, "encode"):
            with torch.no_grad():
                summary["aggregate_posterior"] = aggregate_posterior_mmd(target.model, condition.to(dev, dtype), observed.to(dev, dtype), seed=seed)
    summary.update(
        {
            "method": method,
            "points": list(target.points),
            "latent_dim": d,
            "chains": chains,
            "samples": samples,
            "warmup": warmup if method in ("nuts", "hmc") else 0,
            "device": str(dev),
            "seed": seed,
            "wall_s": wall,
        }
    )

    files: dict[str, Path] = {}
    if out_dir is not None:
        from pyrovae.runs import prepare_run_dir, write_json, write_text

        out = prepare_run_dir(out_dir)
        files["samples"] = save_netcdf(idata, out / "samples.nc")
        write_text(out / "diagnostics.csv", table.to_csv(index=False))
        files["diagnostics_csv"] = out / "diagnostics.csv"
        payload = {"summary": summary, "sampler": post.info}
        if kl is not None:
            payload["kl_q_p"] = kl.to_dict(orient="records")
        write_json(out / "diagnostics.json", payload)
        files["diagnostics_json"] = out / "diagnostics.json"
        if enc is not None:
            which = list(range(min(plot_points, target.num_points)))
            if method in ("nuts", "hmc"):  # the sampler's draws, with the grid over them when there is one
                plot_q_vs_posterior(*enc, post, which=which, grid=grid, path=out / "plots" / "q_vs_posterior.png")
            else:
                plot_q_vs_posterior(*enc, reference, observed=target.observed, which=which, path=out / "plots" / "q_vs_posterior.png")
            files["plot"] = out / "plots" / "q_vs_posterior.png"
        files.update(write_trace_and_rank(idata, out / "plots"))
    return PosteriorReport(method, table, summary, files, post, idata)
