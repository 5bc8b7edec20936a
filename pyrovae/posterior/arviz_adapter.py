r"""Posterior samples as ArviZ objects, netCDF files and a diagnostics table.

One small adapter for both ArviZ generations:

* ArviZ 0.x (Python 3.11 here): ``az.from_dict(posterior=..., sample_stats=...)`` gives an
  ``InferenceData``; ``to_netcdf`` / ``az.from_netcdf`` store it (h5netcdf engine).
* ArviZ 1.x (Python ≥ 3.12): ``az.from_dict({"posterior": ..., "sample_stats": ...})`` gives an
  ``xarray.DataTree``; there is no ``from_pyro``; ``xarray.open_datatree`` reads it back.
  This path is written but not exercised by the tests of this repository.

The diagnostics table has one row per point and latent dimension with r̂ (rank-normalised,
split), bulk and tail ESS (Vehtari et al. 2021) and the divergences of that point, and flags
r̂ > 1.01 and low ESS. r̂ needs at least two chains.

References:
    Vehtari, Gelman, Simpson, Carpenter & Bürkner, *Rank-normalization, folding, and
    localization: an improved R-hat*, Bayesian Analysis 2021.
    Kumar, Carroll, Hartikainen & Martin, *ArviZ*, JOSS 2019.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pyrovae.errors import DataError
from pyrovae.posterior.samples import PER_DRAW_STATS, PosteriorSamples

__all__ = [
    "arviz_major_version",
    "to_arviz",
    "from_arviz",
    "save_netcdf",
    "load_netcdf",
    "diagnostics_table",
    "diagnostics_summary",
]

_INFO_ATTR = "pyrovae_info"


def _az():
    import arviz as az  # imported lazily: it takes seconds

    return az


def arviz_major_version() -> int:
    return int(_az().__version__.split(".")[0])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def to_arviz(samples: PosteriorSamples) -> Any:
    """``InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x) of the draws.

    Dimensions: ``(chain, draw, point, latent)``; ``point`` carries the data-set indices.
    Per-draw statistics (``diverging``, ``accept_prob``) go to ``sample_stats`` with dims
    ``(chain, draw, point)``; settings are kept as a JSON attribute.
    """
    az = _az()
    z = samples.z
    c, dr, n, d = z.shape
    posterior = {name: _np(v) for name, v in samples.samples.items()}
    stats = {k: _np(v) for k, v in samples.stats.items() if k in PER_DRAW_STATS and tuple(v.shape) == (c, dr, n)}
    dims = {name: ["point", "latent"] for name in posterior}
    dims.update({k: ["point"] for k in stats})
    coords = {"point": np.asarray(samples.points, dtype=np.int64), "latent": np.arange(d)}
    attrs = {_INFO_ATTR: json.dumps({"method": samples.method, **samples.info}, default=str)}
    if arviz_major_version() >= 1:  # pragma: no cover - ArviZ 1.x is not installed here
        groups = {"posterior": posterior}
        if stats:
            groups["sample_stats"] = stats
        return az.from_dict(groups, dims=dims, coords=coords, attrs=attrs)
    return az.from_dict(posterior=posterior, sample_stats=stats or None, dims=dims, coords=coords, attrs=attrs)


def _group(obj: Any, name: str):
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


def from_arviz(obj: Any) -> PosteriorSamples:
    """Back from :func:`to_arviz` (or a loaded netCDF file) to :class:`PosteriorSamples`."""
    post = _group(obj, "posterior")
    if post is None:
        raise DataError("no posterior group in the ArviZ object")
    samples = {}
    for name, arr in post.data_vars.items():
        order = ["chain", "draw"] + [dim for dim in arr.dims if dim not in ("chain", "draw")]
        samples[str(name)] = torch.as_tensor(np.asarray(arr.transpose(*order).values))
    stats = {}
    ss = _group(obj, "sample_stats")
    if ss is not None:
        for name, arr in ss.data_vars.items():
            order = ["chain", "draw"] + [dim for dim in arr.dims if dim not in ("chain", "draw")]
            stats[str(name)] = torch.as_tensor(np.asarray(arr.transpose(*order).values))
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
        if arviz_major_version() >= 1:  # pragma: no cover
            data.to_netcdf(tmp, engine="h5netcdf")
        else:
            data.to_netcdf(tmp, engine="h5netcdf")
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
    node = _group(result, "posterior")
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
    post = _group(data, "posterior")
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
    ss = _group(data, "sample_stats")
    if ss is not None and "diverging" in ss and "point" in ss["diverging"].dims and "point" in frame:
        per_point = ss["diverging"].astype(int).sum(("chain", "draw"))
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
