"""The ArviZ adapter: conversion, netCDF round trip and the diagnostics table."""

from __future__ import annotations

import json

import pytest
import torch

from pyrovae.errors import DataError
from pyrovae.posterior import (
    PosteriorSamples,
    diagnostics_summary,
    diagnostics_table,
    from_arviz,
    load_netcdf,
    save_netcdf,
    to_arviz,
)


def fake_samples(shift_second_chain: float = 0.0, seed: int = 0) -> PosteriorSamples:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 400, 3, 2, generator=gen, dtype=torch.float64)
    z[1] += shift_second_chain
    diverging = torch.zeros(2, 400, 3, dtype=torch.bool)
    diverging[0, 5, 1] = diverging[1, 7, 1] = diverging[1, 9, 2] = True
    accept = torch.rand(2, 400, 3, generator=gen, dtype=torch.float64)
    stats = {"diverging": diverging, "acceptance_rate": accept, "adapted_step_size": torch.ones(2, 3)}
    return PosteriorSamples({"z": z}, stats, "hmc", [4, 7, 9], {"num_steps": 5, "seed": seed})


def test_netcdf_round_trip(tmp_path):
    samples = fake_samples()
    path = save_netcdf(samples, tmp_path / "sub" / "samples.nc")
    assert path.is_file() and not list(path.parent.glob(".samples.nc*"))  # written atomically
    loaded = load_netcdf(path)
    back = from_arviz(loaded)
    torch.testing.assert_close(back.z, samples.z)
    assert torch.equal(back.stats["diverging"], samples.stats["diverging"])
    torch.testing.assert_close(back.stats["acceptance_rate"], samples.stats["acceptance_rate"])
    assert "adapted_step_size" not in back.stats  # per-chain adaptation results are not per-draw statistics
    assert back.points == [4, 7, 9] and back.method == "hmc" and back.info["num_steps"] == 5
    # the ArviZ object itself keeps the labelled dimensions
    assert loaded.posterior["z"].dims == ("chain", "draw", "point", "latent")
    assert loaded.posterior["point"].values.tolist() == [4, 7, 9]


def test_to_arviz_dims():
    idata = to_arviz(fake_samples())
    assert dict(idata.posterior["z"].sizes) == {"chain": 2, "draw": 400, "point": 3, "latent": 2}
    assert idata.sample_stats["diverging"].dims == ("chain", "draw")
    assert idata.sample_stats["diverging_point"].dims == ("chain", "draw", "point")


def test_diagnostics_table_on_good_chains():
    table = diagnostics_table(fake_samples())
    assert list(table.columns[:4]) == ["point", "latent", "mean", "sd"]
    assert {"r_hat", "ess_bulk", "ess_tail", "divergences", "flag_rhat", "flag_ess", "flagged"} <= set(table.columns)
    assert len(table) == 6 and table["point"].tolist() == [4, 4, 7, 7, 9, 9]
    assert (table["r_hat"] < 1.01).all() and not table["flag_rhat"].any()
    assert (table["ess_bulk"] > 200).all() and not table["flag_ess"].any()  # i.i.d. draws: ESS near 800
    assert table.groupby("point")["divergences"].first().tolist() == [0, 2, 1]
    assert table["flagged"].tolist() == [False, False, True, True, True, True]  # divergent points only
    summary = diagnostics_summary(table)
    assert summary["divergences"] == 3 and summary["flagged_points"] == [7, 9]
    json.dumps(summary)


def test_diagnostics_table_flags_disagreeing_chains_and_low_ess():
    table = diagnostics_table(fake_samples(shift_second_chain=1.0))
    assert table["flag_rhat"].all() and (table["r_hat"] > 1.1).all()
    strict = diagnostics_table(fake_samples(), ess_min=5000)
    assert strict["flag_ess"].all()


def test_errors(tmp_path):
    with pytest.raises(DataError):
        load_netcdf(tmp_path / "missing.nc")
    with pytest.raises(DataError):
        PosteriorSamples({"z": torch.zeros(2, 3)})
    with pytest.raises(DataError):
        diagnostics_table(fake_samples(), var_name="w")
