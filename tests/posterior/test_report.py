"""posterior_report: the four methods end to end, files written, and clear errors."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.models import FixedNoise, SigmaCVAE
from pyrovae.posterior import linearize, load_netcdf, model_target, posterior_report
from tests.posterior.builders import tanh_model

D64 = torch.float64


def toy_data(n=30, y_dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.zeros(n, 0, dtype=D64), torch.randn(n, y_dim, generator=gen, dtype=D64)


def test_grid_report_writes_everything(tmp_path):
    model = tanh_model(1)
    report = posterior_report(model, toy_data(), method="grid", points="0,3,5", chains=2, samples=200, out_dir=tmp_path)
    assert set(report.files) == {"samples", "diagnostics_csv", "diagnostics_json", "plot", "trace", "rank"}
    assert all(p.is_file() for p in report.files.values())
    table = pd.read_csv(tmp_path / "diagnostics.csv")
    assert table["point"].tolist() == [0, 3, 5]
    assert {"r_hat", "ess_bulk", "ess_tail", "divergences", "kl_q_p", "grid_border_mass", "flagged"} <= set(table.columns)
    assert (table["kl_q_p"] > -0.05).all()  # a KL, up to Monte-Carlo error
    payload = json.loads((tmp_path / "diagnostics.json").read_text())
    assert payload["summary"]["method"] == "grid" and payload["summary"]["points"] == [0, 3, 5]
    assert payload["summary"]["flagged_points"] == []  # i.i.d. draws of a well-resolved grid
    assert len(payload["kl_q_p"]) == 3 and "aggregate_posterior" in payload["summary"]
    assert load_netcdf(tmp_path / "samples.nc").posterior["z"].shape == (2, 200, 3, 1)


def test_exact_report_on_a_linear_decoder():
    torch.manual_seed(0)
    model = SigmaCVAE(0, 3, 2, encoder_widths=(4,), decoder_widths=(), noise=FixedNoise(0.5)).double()
    x, y = toy_data()
    report = posterior_report(model, (x, y), method="exact", points=4, chains=2, samples=500)
    lg = linearize(model_target(model, x, y, points=4))
    mean, cov = lg.posterior(y[:4])
    got = torch.tensor(report.table["mean"].values).view(4, 2)
    tol = 4 * torch.diagonal(cov, dim1=-2, dim2=-1).sqrt() / 1000**0.5
    assert ((got - mean).abs() < tol).all()
    assert report.summary["kl_source"] == "exact"


def test_exact_refuses_a_nonlinear_decoder():
    with pytest.raises(ConfigError, match="not linear"):
        posterior_report(tanh_model(1), toy_data(), method="exact", points=2)


@pytest.mark.parametrize("method", ["hmc", "nuts"])
def test_sampler_reports_carry_the_grid_crosscheck(method):
    # plumbing only (tiny runs); the samplers' accuracy is tested in test_hmc.py
    report = posterior_report(
        tanh_model(2), toy_data(), method=method, points=2, chains=2, samples=20, warmup=10, grid_resolution=101,
        sampler_options={"max_tree_depth": 4} if method == "nuts" else None,
    )
    assert {"grid_mean", "grid_var", "mean_z", "flag_grid", "r_hat", "kl_q_p"} <= set(report.table.columns)
    assert "grid_crosscheck_flagged_points" in report.summary
    assert report.summary["kl_source"] == f"samples ({method})"
    assert report.samples.z.shape == (2, 20, 2, 2) and report.samples.method == method


def test_bad_requests():
    with pytest.raises(ConfigError, match="unknown method"):
        posterior_report(tanh_model(1), toy_data(), method="vi")
    three = SigmaCVAE(0, 3, 3, encoder_widths=(4,), decoder_widths=(4,)).double()
    with pytest.raises(ConfigError, match="1-D or 2-D"):
        posterior_report(three, toy_data(), method="grid", points=2)
    with pytest.raises(ConfigError, match="out of range"):
        posterior_report(tanh_model(1), toy_data(), method="grid", points=[0, 99])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            posterior_report(tanh_model(1), toy_data(), method="hmc", points=2, device="cuda")
