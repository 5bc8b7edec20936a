r"""Posterior samples as complete ArviZ objects, netCDF files and a diagnostics table.

**Layout.** The posterior is over one latent :math:`z_n` per data point, conditional on that
point's :math:`(x_n, y_n)`: :math:`p_\theta(z_{1:N} \mid x_{1:N}, y_{1:N}) = \prod_n
p_\theta(z_n \mid x_n, y_n)` for a fixed decoder. The data points are therefore a dimension
*inside* the variables, never a sample dimension, and every group follows ArviZ's shapes:

===================== ============== ===================================================
group                 variable        dims
===================== ============== ===================================================
posterior             ``z``           (chain, draw, point, latent)
log_likelihood        ``y``           (chain, draw, point): :math:`\log p_\theta(y_n \mid x_n, z_n)`
posterior_predictive  ``y``           (chain, draw, point, y_dim): :math:`y^{rep}_n \sim p_\theta(y \mid x_n, z_n)`
observed_data         ``y``           (point, y_dim)
constant_data         ``x``           (point, x_dim), when the model is conditional
constant_data         ``q_loc``,      (point, latent): the encoder's :math:`q_\phi(z \mid x_n, y_n)`
                      ``q_scale``
sample_stats          ``lp``,         (chain, draw): of the joint over all points, the sum of
                      ``energy``,     the per-point log densities and Hamiltonians, whether any
                      ``diverging``,  point diverged, the mean acceptance probability, the
                      ``acceptance_rate``, geometric mean step size, leapfrog steps — what
                      ``step_size``,  ``az.plot_energy`` and ``az.plot_pair(divergences=True)``
                      ``n_steps``     read
sample_stats          ``<name>_point`` (chain, draw, point): the same per point, for samplers
                                     that keep one chain per point (the batched HMC)
===================== ============== ===================================================

``point`` carries the data-set row indices; ``latent``, ``y_dim``, ``x_dim`` are 0, 1, ….
With the pointwise ``log_likelihood`` of local latents, ``az.loo``'s elpd of point *n* is
:math:`\log \int p(y_n \mid z)\, p(z)\, dz = \log p_\theta(y_n \mid x_n)` (leaving :math:`y_n` out
leaves :math:`z_n` at its prior), estimated by importance sampling from the posterior, and its
Pareto :math:`\hat k` says when that estimate is unreliable (posteriors much narrower than the prior).

**ArviZ generations.** ArviZ 0.x (installed here): the groups are ``xarray.Dataset``\ s in an
``InferenceData``; NUTS runs start from ``az.from_pyro``'s object (see
:mod:`~pyrovae.posterior.nuts`) and gain the groups and statistics it lacks; netCDF through
``to_netcdf`` / ``az.from_netcdf`` (h5netcdf). ArviZ 1.x (Python ≥ 3.12): the same Datasets in
an ``xarray.DataTree`` (there is no ``from_pyro``; NUTS files are built from the draws), read
back with ``xarray.open_datatree``; this path is written but not exercised by this repository's
tests.

The diagnostics table has one row per point and latent dimension with r̂ (rank-normalised,
split), bulk and tail ESS (Vehtari et al. 2021) and the divergences of that point, and flags
r̂ > 1.01 and low ESS. r̂ needs at least two chains.

References:
    Vehtari, Gelman, Simpson, Carpenter & Bürkner, *Rank-normalization, folding, and
    localization: an improved R-hat*, Bayesian Analysis 2021.
    Vehtari, Gelman & Gabry, *Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC*, Statistics and Computing 2017 (PSIS-LOO).
    Kumar, Carroll, Hartikainen & Martin, *ArviZ*, JOSS 2019.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from pyrovae.errors import DataError
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget

__all__ = [
    "DIMS",
    "JOINT_STATS",
    "arviz_major_version",
    "coords_of",
    "arviz_group",
    "to_arviz",
    "from_arviz",
    "save_netcdf",
    "load_netcdf",
    "diagnostics_table",
    "diagnostics_summary",
]

_INFO_ATTR = "pyrovae_info"

#: dims of every variable after (chain, draw); also given to ``az.from_pyro``
DIMS = {
    "z": ["point", "latent"],
    "y": ["point", "y_dim"],
    "x": ["point", "x_dim"],
    "q_loc": ["point", "latent"],
    "q_scale": ["point", "latent"],
}


def _geometric_mean(v: torch.Tensor) -> torch.Tensor:
    return v.double().log().mean(-1).exp()


#: per-point sampler statistics ``(chain, draw, point)`` and how the joint one is made from them
JOINT_STATS = {
    "diverging": lambda v: v.any(-1),
    "acceptance_rate": lambda v: v.double().mean(-1),
    "energy": lambda v: v.double().sum(-1),
    "lp": lambda v: v.double().sum(-1),
    "step_size": _geometric_mean,
}
_POINT_SUFFIX = "_point"


def _az():
    import arviz as az  # imported lazily: it takes seconds

    return az


def arviz_major_version() -> int:
    return int(_az().__version__.split(".")[0])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def coords_of(points: Sequence[int], latent_dim: int, observed: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> dict:
    """Coordinates of the layout: data-set row indices for ``point``, 0, 1, … for the others."""
    coords = {"point": np.asarray(list(points), dtype=np.int64), "latent": np.arange(latent_dim)}
    if observed is not None:
        coords["y_dim"] = np.arange(observed.shape[-1])
    if condition is not None:
        coords["x_dim"] = np.arange(condition.shape[-1])
    return coords


def _dataset(data: dict[str, np.ndarray], coords: dict, sample_dims: Sequence[str], attrs: dict | None = None):
    """An ``xarray.Dataset`` with explicit dims: ``sample_dims`` then each variable's own (``DIMS``,
    ``point`` for ``*_point`` statistics, nothing for joint statistics)."""
    import xarray as xr

    variables = {}
    for name, value in data.items():
        own = DIMS.get(name, ["point"] if name.endswith(_POINT_SUFFIX) else [])
        dims = list(sample_dims) + own[: value.ndim - len(sample_dims)]
        if len(dims) != value.ndim:
            raise DataError(f"{name}: {value.ndim} axes for dims {dims}")
        variables[name] = (dims, value)
    used = {dim for dims, _ in variables.values() for dim in dims}
    return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used}, attrs=attrs or {})


def _in_blocks(fn, z: torch.Tensor, rows: int = 1 << 18) -> torch.Tensor:
    """``fn`` over draws ``(S, N, d)`` in blocks of about ``rows`` latents (bounded memory)."""
    step = max(1, rows // max(1, z.shape[1]))
    with torch.no_grad():
        return torch.cat([fn(z[i : i + step]) for i in range(0, z.shape[0], step)])


def _sample_stats(samples: PosteriorSamples, c: int, dr: int, n: int) -> dict[str, np.ndarray]:
    stats = {}
    for name, value in samples.stats.items():
        shape = tuple(value.shape)
        if shape == (c, dr, n):
            stats[name + _POINT_SUFFIX] = _np(value)
            if name in JOINT_STATS:
                stats[name] = _np(JOINT_STATS[name](value))
        elif shape == (c, dr):
            stats[name] = _np(value)
    if "diverging" in stats:
        stats["diverging"] = stats["diverging"].astype(bool)
    return stats


def _groups(samples: PosteriorSamples, target: LatentTarget | None, seed: int, max_predictive_values: int) -> dict:
    z = samples.z
    c, dr, n, d = z.shape
    observed = condition = None
    if target is not None:
        if target.num_points != n or target.latent_dim != d:
            raise DataError(f"the target has {target.num_points} points of dimension {target.latent_dim}, the draws {n} of {d}")
        observed = target.observed
        condition = target.condition if target.condition is not None and target.condition.shape[-1] > 0 else None
    coords = coords_of(samples.points, d, observed, condition)
    info = {_INFO_ATTR: json.dumps({"method": samples.method, **samples.info}, default=str)}
    sample = ("chain", "draw")
    groups = {"posterior": _dataset({k: _np(v) for k, v in samples.samples.items()}, coords, sample, info)}
    stats = _sample_stats(samples, c, dr, n)
    if stats:
        groups["sample_stats"] = _dataset(stats, coords, sample)
    if target is None:
        return groups

    zt = z.to(device=target.device, dtype=target.dtype).flatten(0, 1)  # (C·D, N, d)
    loglik = _in_blocks(target.log_lik, zt).view(c, dr, n)
    groups["log_likelihood"] = _dataset({"y": _np(loglik)}, coords, sample)
    if observed is not None:
        groups["observed_data"] = _dataset({"y": _np(observed)}, coords, ())
    constant = {} if condition is None else {"x": _np(condition)}
    enc = target.encoder()
    if enc is not None:
        constant.update(q_loc=_np(enc[0]), q_scale=_np(enc[1]))
    if constant:
        groups["constant_data"] = _dataset(constant, coords, ())
    if observed is not None and target.decoder_mean is not None and target.decoder_scale is not None:
        # every `thin`-th draw, so that the replicated data stay below max_predictive_values numbers
        thin = max(1, math.ceil(c * dr * n * observed.shape[-1] / max_predictive_values))
        kept = torch.arange(0, dr, thin)
        zk = z[:, kept].to(device=target.device, dtype=target.dtype).flatten(0, 1)
        gen = torch.Generator(device=target.device).manual_seed(int(seed))

        def replicate(zb):
            mean = target.decoder_mean(zb)
            scale = target.decoder_scale(zb).expand_as(mean)
            return mean + scale * torch.randn(mean.shape, generator=gen, dtype=mean.dtype, device=mean.device)

        y_rep = _in_blocks(replicate, zk).view(c, kept.numel(), n, observed.shape[-1])
        pp_coords = {**coords, "draw": kept.numpy()}
        groups["posterior_predictive"] = _dataset({"y": _np(y_rep)}, pp_coords, sample, {"thin": thin})
    return groups


def _merge_into(base: Any, groups: dict) -> Any:
    """Add to ``base`` (an ``az.from_pyro`` object) the groups and variables it lacks."""
    for name, ds in groups.items():
        if name in base.groups():
            have = base[name]
            missing = {v: ds[v] for v in ds.data_vars if v not in have.data_vars}
            merged = have.assign(missing) if missing else have
            merged.attrs.update(ds.attrs)
            base[name] = merged
        else:
            base.add_groups({name: ds})
    return base


def to_arviz(
    samples: PosteriorSamples,
    target: LatentTarget | None = None,
    seed: int = 0,
    max_predictive_values: int = 10**7,
) -> Any:
    """``InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x) in the layout above.

    Without ``target`` only ``posterior`` and ``sample_stats`` are written. With the
    :class:`~pyrovae.posterior.target.LatentTarget` the draws came from, also
    ``log_likelihood``, ``observed_data``, ``constant_data`` and ``posterior_predictive``
    (replicates drawn with ``seed``; every k-th draw when all of them would exceed
    ``max_predictive_values`` numbers, k in the group's ``thin`` attribute). A NUTS run's
    ``az.from_pyro`` object (``samples.inference_data``) is the base: its groups are kept and
    only what it lacks is added.
    """
    groups = _groups(samples, target, seed, max_predictive_values)
    if arviz_major_version() >= 1:  # pragma: no cover - ArviZ 1.x is not installed here
        import xarray as xr

        return xr.DataTree.from_dict(groups)
    if samples.inference_data is not None:
        return _merge_into(samples.inference_data.copy(), groups)
    return _az().InferenceData(**groups)


def arviz_group(obj: Any, name: str):
    """A group of an InferenceData or DataTree as an ``xarray.Dataset`` (``None`` if absent)."""
    try:
        node = obj[name]
    except (KeyError, AttributeError, TypeError):
        node = getattr(obj, name, None)
    if node is None:
        return None
    if hasattr(node, "to_dataset"):  # DataTree node
        return node.to_dataset()
    return node


def _sample_first(arr) -> torch.Tensor:
    order = ["chain", "draw"] + [dim for dim in arr.dims if dim not in ("chain", "draw")]
    return torch.as_tensor(np.asarray(arr.transpose(*order).values))


def from_arviz(obj: Any) -> PosteriorSamples:
    """Back from :func:`to_arviz` (or a loaded netCDF file) to :class:`PosteriorSamples`.

    Per-point statistics (``<name>_point``) come back under their own name; joint ones only
    when there is no per-point version (NUTS)."""
    post = arviz_group(obj, "posterior")
    if post is None:
        raise DataError("no posterior group in the ArviZ object")
    samples = {str(name): _sample_first(arr) for name, arr in post.data_vars.items()}
    stats = {}
    ss = arviz_group(obj, "sample_stats")
    if ss is not None:
        names = [str(v) for v in ss.data_vars]
        for name in names:
            if name.endswith(_POINT_SUFFIX):
                stats[name[: -len(_POINT_SUFFIX)]] = _sample_first(ss[name])
        for name in names:
            if not name.endswith(_POINT_SUFFIX) and name not in stats and name + _POINT_SUFFIX not in names:
                stats[name] = _sample_first(ss[name])
    root_attrs = getattr(obj, "attrs", None) or {}
    info = json.loads(root_attrs.get(_INFO_ATTR) or post.attrs.get(_INFO_ATTR) or "{}")
    method = str(info.pop("method", ""))
    points = [int(p) for p in post["point"].values] if "point" in post.coords else []
    return PosteriorSamples(samples, stats, method, points, info)


def save_netcdf(obj: PosteriorSamples | Any, path: str | Path) -> Path:
    """Write samples (or an ArviZ object) to ``path`` as netCDF (h5netcdf), atomically."""
    path = Path(path)
    data = to_arviz(obj) if isinstance(obj, PosteriorSamples) else obj
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".nc")
    os.close(fd)
    try:
        data.to_netcdf(tmp, engine="h5netcdf")  # InferenceData and DataTree alike
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_netcdf(path: str | Path) -> Any:
    """Read a file written by :func:`save_netcdf` into memory (InferenceData or DataTree)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    az = _az()
    if arviz_major_version() >= 1:  # pragma: no cover
        import xarray as xr

        with xr.open_datatree(path, engine="h5netcdf") as tree:
            return tree.load()
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(str(path), engine="h5netcdf")


def _as_dataset(result: Any):
    """ArviZ 0.x diagnostics return Datasets; 1.x may return a DataTree."""
    if hasattr(result, "data_vars"):
        return result
    node = arviz_group(result, "posterior")
    return node if node is not None else result


def diagnostics_table(
    obj: PosteriorSamples | Any,
    var_name: str = "z",
    rhat_max: float = 1.01,
    ess_min: float | None = None,
) -> pd.DataFrame:
    """One row per point and latent dimension: ``mean, sd, r_hat, ess_bulk, ess_tail, divergences``
    and the flags ``flag_rhat`` (r̂ > ``rhat_max``), ``flag_ess`` (bulk or tail ESS below
    ``ess_min``, default 100 per chain), ``flag_divergent`` and ``flagged`` (any)."""
    az = _az()
    data = to_arviz(obj) if isinstance(obj, PosteriorSamples) else obj
    post = arviz_group(data, "posterior")
    if post is None or var_name not in post:
        raise DataError(f"no variable {var_name!r} in the posterior")
    arr = post[var_name]
    num_chains = int(arr.sizes["chain"])
    ess_min = 100.0 * num_chains if ess_min is None else float(ess_min)
    rhat = _as_dataset(az.rhat(data, var_names=[var_name]))[var_name]
    bulk = _as_dataset(az.ess(data, var_names=[var_name], method="bulk"))[var_name]
    tail = _as_dataset(az.ess(data, var_names=[var_name], method="tail"))[var_name]
    mean = arr.mean(("chain", "draw"))
    sd = arr.std(("chain", "draw"), ddof=1)
    extra = [dim for dim in arr.dims if dim not in ("chain", "draw")]
    frame = pd.DataFrame(
        {
            "mean": mean.transpose(*extra).values.ravel(),
            "sd": sd.transpose(*extra).values.ravel(),
            "r_hat": rhat.transpose(*extra).values.ravel(),
            "ess_bulk": bulk.transpose(*extra).values.ravel(),
            "ess_tail": tail.transpose(*extra).values.ravel(),
        }
    )
    grids = np.meshgrid(*[np.asarray(arr[dim].values) for dim in extra], indexing="ij")
    for dim, g in zip(extra, grids):
        frame.insert(len(frame.columns) - 5, dim, g.ravel())
    ss = arviz_group(data, "sample_stats")
    if ss is not None and "diverging_point" in ss and "point" in frame:
        per_point = ss["diverging_point"].astype(int).sum(("chain", "draw"))
        lookup = dict(zip(np.asarray(per_point["point"].values).tolist(), np.asarray(per_point.values).tolist()))
        frame["divergences"] = frame["point"].map(lookup).fillna(0).astype(int)
    elif ss is not None and "diverging" in ss:
        frame["divergences"] = int(ss["diverging"].astype(int).sum())
    else:
        frame["divergences"] = 0
    frame["flag_rhat"] = ~(frame["r_hat"] <= rhat_max)  # NaN r̂ is flagged
    frame["flag_ess"] = ~((frame["ess_bulk"] >= ess_min) & (frame["ess_tail"] >= ess_min))
    frame["flag_divergent"] = frame["divergences"] > 0
    frame["flagged"] = frame["flag_rhat"] | frame["flag_ess"] | frame["flag_divergent"]
    frame.attrs.update({"rhat_max": rhat_max, "ess_min": ess_min, "num_chains": num_chains})
    return frame


def diagnostics_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Worst values and the flagged points of a :func:`diagnostics_table`, JSON-friendly."""
    point = table["point"] if "point" in table else pd.Series(range(len(table)))
    out = {
        "max_r_hat": float(table["r_hat"].max()),
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "min_ess_tail": float(table["ess_tail"].min()),
        "divergences": int(table.drop_duplicates("point")["divergences"].sum()) if "point" in table else int(table["divergences"].max()),
        "flagged_points": sorted({int(p) for p in point[table["flagged"]]}),
    }
    out.update({k: v for k, v in table.attrs.items() if isinstance(v, (int, float, str))})
    return out
