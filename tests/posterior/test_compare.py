"""KL(q || p) per point (Yacoby, Pan & Doshi-Velez 2021 Eq. 3), the unbiased MMD, and the comparison figure."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.posterior import (
    aggregate_posterior_mmd,
    grid_posterior,
    log_evidence_from_samples,
    plot_q_vs_posterior,
    posterior_kl,
)
from tests.posterior.builders import linear_data, random_linear, tanh_model, tanh_target

D64 = torch.float64


def test_kl_exact_grid_and_samples_agree_on_a_linear_decoder():
    lg = random_linear(2, 3, 0.5, seed=2)
    y = linear_data(lg, 4)
    target = lg.as_target(y)
    mf_mean, mf_var = lg.mean_field(y)
    # q = best mean-field fit shifted a little: a known, positive KL
    q_loc, q_scale = mf_mean + 0.2, mf_var.sqrt() * 1.3
    exact = posterior_kl(target, lg, q_loc, q_scale, num_samples=4000, seed=0)
    assert (exact["kl"] > 0.05).all()
    # Monte Carlo beside the closed form, within 4 standard errors
    assert (exact["kl_se"] == 0).all()
    assert ((exact["kl_mc"] - exact["kl"]).abs() < 4 * exact["elbo_se"]).all(), exact
    grid = posterior_kl(target, grid_posterior(target, resolution=201, on_flag="raise"), q_loc, q_scale, num_samples=4000)
    torch.testing.assert_close(torch.tensor(grid["log_evidence"].values), lg.log_marginal(y), rtol=0, atol=1e-7)
    assert ((grid["kl"] - exact["kl"]).abs() < 4 * grid["kl_se"]).all()
    # i.i.d. grid draws stand in for MCMC draws: the evidence by importance sampling around them
    draws = grid_posterior(target, resolution=201, on_flag="raise").sample(2, 200, seed=3)
    log_ev, ess_frac = log_evidence_from_samples(target, draws, q_loc, q_scale, seed=1)
    torch.testing.assert_close(log_ev, lg.log_marginal(y), rtol=0, atol=0.02)
    assert (ess_frac > 0.3).all()
    from_samples = posterior_kl(target, draws, q_loc, q_scale, num_samples=4000)
    assert ((from_samples["kl"] - exact["kl"]).abs() < 0.05).all()
    assert from_samples["source"].iloc[0] == "samples (grid)"


def test_mean_field_optimum_kl_is_appendix_c3():
    lg = random_linear(2, 2, 0.3, seed=7)
    y = linear_data(lg, 3)
    mean, var = lg.mean_field(y)
    kl = posterior_kl(lg.as_target(y), lg, mean, var.sqrt())["kl"].values
    lam = lg.precision()
    want = 0.5 * (torch.log(torch.diagonal(lam)).sum() - torch.logdet(lam))
    assert kl == pytest.approx([float(want)] * 3, abs=1e-10)


def test_aggregate_posterior_mmd_runs_on_a_model():
    model = tanh_model(2)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(60, 3, generator=gen, dtype=D64)
    out = aggregate_posterior_mmd(model, torch.zeros(60, 0, dtype=D64), y, max_points=50, seed=0)
    assert out["num_points"] == 50 and out["bandwidth"] > 0 and math.isfinite(out["mmd2"])


def test_plot_q_beside_the_posterior(tmp_path):
    import matplotlib.pyplot as plt

    # 2-D: grid contours with q's contours on top, two of three points
    target = tanh_target(2, 3, seed=1)
    loc, scale = target.encoder()
    grid = grid_posterior(target, resolution=101, on_flag="ignore")
    fig = plot_q_vs_posterior(loc, scale, grid, which=[0, 2], path=tmp_path / "q.png")
    assert (tmp_path / "q.png").stat().st_size > 1000
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ConfigError):
        plot_q_vs_posterior(loc, scale, grid, which=[5])
    # 1-D: a histogram of draws beside q's density
    target1 = tanh_target(1, 2, seed=3)
    draws = grid_posterior(target1, on_flag="ignore").sample(1, 200)
    plt.close(plot_q_vs_posterior(*target1.encoder(), draws, path=tmp_path / "draws.png"))
    assert (tmp_path / "draws.png").is_file()
