"""The complete InferenceData of both samplers, checked against closed forms, and ArviZ's
functions on it (loo, plot_energy, plot_ppc, plot_pair with divergences) and on the files.

A linear decoder makes every quantity known: the posterior, the evidence log p(y) that
az.loo's pointwise elpd estimates for local latents, and the posterior predictive moments."""

from __future__ import annotations

import math

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyrovae.models import FixedNoise, SigmaCVAE
from pyrovae.posterior import (
    PosteriorSamples,
    batched_hmc,
    from_arviz,
    grid_posterior,
    linearize,
    load_netcdf,
    model_target,
    nuts_posterior,
    plot_q_vs_posterior,
    save_netcdf,
    to_arviz,
    write_trace_and_rank,
)
from tests.posterior.builders import tanh_target

D64 = torch.float64
# the ArviZ calls below use ArviZ 0.x's signatures (ax=, divergences=); ArviZ 1.x renamed the plots
ARVIZ_0 = pytest.mark.skipif(int(az.__version__.split(".")[0]) >= 1, reason="ArviZ 0.x plotting API")
SIGMA = 2.0  # a weak likelihood: posteriors not much narrower than the prior, so PSIS-LOO is reliable


@pytest.fixture(scope="module")
def linear():
    """A σ-CVAE with a linear decoder (exact posteriors), 5 of 8 points, and its exact Gaussian."""
    torch.manual_seed(0)
    model = SigmaCVAE(0, 3, 2, encoder_widths=(4,), decoder_widths=(), noise=FixedNoise(SIGMA)).double()
    gen = torch.Generator().manual_seed(0)
    y = 2.0 * torch.randn(8, 3, generator=gen, dtype=D64)
    target = model_target(model, torch.zeros(8, 0, dtype=D64), y, points=[1, 2, 4, 6, 7])
    return target, linearize(target)


def exact_draws(target, lg, chains=4, draws=1000, seed=0) -> PosteriorSamples:
    mean, cov = lg.posterior(target.observed)
    eps = torch.randn(chains, draws, *mean.shape, 1, generator=torch.Generator().manual_seed(seed), dtype=D64)
    z = mean + (torch.linalg.cholesky(cov) @ eps).squeeze(-1)
    return PosteriorSamples({"z": z}, {}, "exact", list(target.points), {"iid": True})


@pytest.fixture(scope="module")
def hmc(linear):
    target, _ = linear
    samples = batched_hmc(target, num_samples=100, warmup_steps=60, num_chains=2, num_steps=5, seed=0)
    # three divergent draws of the joint chain: (chain 0, draws 3 and 10) at one point, (1, 5) at another
    samples.stats["diverging"][0, [3, 10], 2] = True
    samples.stats["diverging"][1, 5, 0] = True
    return samples


@pytest.fixture(scope="module")
def nuts(linear):
    target, _ = linear
    return nuts_posterior(target, num_samples=30, warmup_steps=30, num_chains=2, seed=0, max_tree_depth=4)


def layout(idata) -> dict:
    return {g: {str(v): idata[g][v].dims for v in idata[g].data_vars} for g in idata.groups()}


def test_the_layout_keeps_points_inside_the_variables(linear, hmc):
    target, _ = linear
    idata = to_arviz(hmc, target)
    got = layout(idata)
    assert got["posterior"] == {"z": ("chain", "draw", "point", "latent")}
    assert got["log_likelihood"] == {"y": ("chain", "draw", "point")}
    assert got["posterior_predictive"] == {"y": ("chain", "draw", "point", "y_dim")}
    assert got["observed_data"] == {"y": ("point", "y_dim")}
    assert got["constant_data"] == {"q_loc": ("point", "latent"), "q_scale": ("point", "latent")}
    for name in ("diverging", "acceptance_rate", "energy", "lp", "step_size", "n_steps"):
        assert got["sample_stats"][name] == ("chain", "draw"), name
    for name in ("diverging", "acceptance_rate", "energy", "lp", "step_size"):
        assert got["sample_stats"][name + "_point"] == ("chain", "draw", "point"), name
    assert idata.posterior["point"].values.tolist() == [1, 2, 4, 6, 7]
    np.testing.assert_array_equal(idata.observed_data["y"].values, target.observed.numpy())
    loc, scale = target.encoder()
    np.testing.assert_array_equal(idata.constant_data["q_scale"].values, scale.numpy())


def test_sample_stats_are_the_joint_of_the_per_point_samplers(linear, hmc):
    target, _ = linear
    ss = to_arviz(hmc, target).sample_stats
    np.testing.assert_allclose(ss["energy"], ss["energy_point"].sum("point"), rtol=1e-12)
    np.testing.assert_allclose(ss["lp"], ss["lp_point"].sum("point"), rtol=1e-12)
    np.testing.assert_allclose(ss["acceptance_rate"], ss["acceptance_rate_point"].mean("point"), rtol=1e-12)
    np.testing.assert_allclose(np.log(ss["step_size"]), np.log(ss["step_size_point"]).mean("point"), rtol=1e-12)
    assert ss["diverging"].values.sum() == 3 and ss["diverging"].dtype == bool
    assert ss["diverging"].values[0, [3, 10]].all() and ss["diverging"].values[1, 5]


def test_lp_is_the_log_likelihood_plus_the_standard_normal_prior(linear, hmc):
    target, _ = linear
    idata = to_arviz(hmc, target)
    z = idata.posterior["z"].values
    log_prior = -0.5 * (z**2).sum(-1) - math.log(2 * math.pi)  # d = 2
    lp_point = idata.sample_stats["lp_point"].values
    np.testing.assert_allclose(lp_point - idata.log_likelihood["y"].values, log_prior, atol=1e-9)
    # and the log-likelihood is the Gaussian decoder's, by the closed form of the linear decoder
    lg = linear[1]
    direct = lg.log_likelihood(torch.as_tensor(z), target.observed).numpy()
    np.testing.assert_allclose(idata.log_likelihood["y"].values, direct, atol=1e-9)


def test_loo_estimates_the_evidence_of_each_point(linear):
    # with local latents, leaving y_n out leaves z_n at its prior: elpd_loo_n = log p(y_n)
    target, lg = linear
    idata = to_arviz(exact_draws(target, lg), target)
    loo = az.loo(idata, pointwise=True)
    assert (loo.pareto_k.values < 0.5).all()
    np.testing.assert_allclose(loo.loo_i.values, lg.log_marginal(target.observed).numpy(), atol=0.05)


def test_posterior_predictive_has_the_closed_form_moments(linear):
    # y_rep = W z + b + σ ε with z ~ N(μ, Σ): mean W μ + b, covariance W Σ Wᵀ + σ² I
    target, lg = linear
    idata = to_arviz(exact_draws(target, lg), target, seed=3)
    y_rep = idata.posterior_predictive["y"].values.reshape(-1, 5, 3)
    mean, cov = lg.posterior(target.observed)
    w, b = lg.weight.numpy(), lg.bias.numpy()
    want_mean = mean.numpy() @ w.T + b
    want_var = np.einsum("ij,njk,ik->ni", w, cov.numpy(), w) + SIGMA**2
    se = np.sqrt(want_var / y_rep.shape[0])
    assert (np.abs(y_rep.mean(0) - want_mean) < 4 * se).all()
    assert (np.abs(y_rep.var(0) / want_var - 1) < 4 * math.sqrt(2 / y_rep.shape[0])).all()


def test_posterior_predictive_thins_draws_above_the_cap(linear):
    target, lg = linear
    idata = to_arviz(exact_draws(target, lg, chains=2, draws=100), target, max_predictive_values=2 * 25 * 5 * 3)
    pp = idata.posterior_predictive
    assert pp.attrs["thin"] == 4 and pp["draw"].values.tolist() == list(range(0, 100, 4))


@ARVIZ_0
def test_arviz_functions_on_the_hmc_file(linear, hmc, tmp_path):
    target, _ = linear
    idata = load_netcdf(save_netcdf(to_arviz(hmc, target), tmp_path / "hmc.nc"))
    open_before = plt.get_fignums()
    assert np.isfinite(az.loo(idata).elpd_loo)
    ax = Figure().subplots()
    az.plot_energy(idata, ax=ax)
    assert np.isfinite(az.bfmi(idata)).all() and az.bfmi(idata).shape == (2,)
    ax = Figure().subplots()
    az.plot_ppc(idata, ax=ax, num_pp_samples=20)
    assert len(ax.get_lines()) > 20  # the replicates, their mean and the observed data
    ax = Figure().subplots()
    az.plot_pair(idata, var_names=["z"], coords={"point": [4]}, divergences=True, ax=ax)
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [len(line.get_xdata()) for line in markers] == [3]  # the three divergent joint draws
    assert plt.get_fignums() == open_before


def test_netcdf_round_trip_of_per_point_statistics(linear, hmc, tmp_path):
    target, _ = linear
    back = from_arviz(load_netcdf(save_netcdf(to_arviz(hmc, target), tmp_path / "hmc.nc")))
    for name in ("diverging", "acceptance_rate", "energy", "lp", "step_size"):
        torch.testing.assert_close(back.stats[name], hmc.stats[name].cpu(), msg=name)
    torch.testing.assert_close(back.stats["n_steps"], hmc.stats["n_steps"])
    assert back.method == "hmc" and back.points == [1, 2, 4, 6, 7]


@ARVIZ_0
def test_nuts_comes_through_from_pyro_with_the_same_layout(linear, hmc, nuts):
    target, _ = linear
    n_idata, h_idata = to_arviz(nuts, target), to_arviz(hmc, target)
    assert n_idata.posterior.attrs.get("inference_library") == "pyro"  # built by az.from_pyro
    assert set(n_idata.groups()) == set(h_idata.groups())
    n_layout, h_layout = layout(n_idata), layout(h_idata)
    for group in ("posterior", "log_likelihood", "posterior_predictive", "observed_data", "constant_data"):
        assert n_layout[group] == h_layout[group], group
    assert set(n_layout["sample_stats"]) == {"diverging", "lp", "step_size"}
    assert all(n_layout["sample_stats"][k] == ("chain", "draw") for k in n_layout["sample_stats"])
    assert n_idata.posterior["chain"].values.tolist() == [0, 1]
    # from_pyro's pointwise log-likelihood (Pyro's Predictive) is the decoder's
    z = torch.as_tensor(n_idata.posterior["z"].values)
    np.testing.assert_allclose(n_idata.log_likelihood["y"].values, target.log_lik(z).numpy(), atol=1e-10)
    np.testing.assert_array_equal(n_idata.sample_stats["diverging"].values, nuts.stats["diverging"].numpy())
    assert np.isfinite(az.loo(n_idata).elpd_loo)
    ax = Figure().subplots()
    az.plot_pair(n_idata, var_names=["z"], coords={"point": [1]}, divergences=True, ax=ax)


def test_trace_and_rank_plots_are_written_without_pyplot_figures(linear, hmc, tmp_path):
    target, _ = linear
    open_before = plt.get_fignums()
    paths = write_trace_and_rank(to_arviz(hmc, target), tmp_path, max_rows=4)
    assert set(paths) == {"trace", "rank"}
    assert all(p.stat().st_size > 5000 for p in paths.values())
    assert plt.get_fignums() == open_before


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_q_vs_posterior_shows_the_draws_with_the_grid_and_a_legend(latent_dim):
    target = tanh_target(latent_dim, 3, seed=1)
    draws = batched_hmc(target, num_samples=40, warmup_steps=20, num_chains=2, num_steps=3, seed=0)
    grid = grid_posterior(target, resolution=101, on_flag="ignore")
    fig = plot_q_vs_posterior(*target.encoder(), draws, grid=grid)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["hmc draws", "grid posterior", "q(z | x, y), encoder"]
    ax = fig.axes[0]
    if latent_dim == 1:  # the histogram's bars are the draws of point 0
        heights = np.array([p.get_height() for p in ax.patches])
        widths = np.array([p.get_width() for p in ax.patches])
        inside = ((draws.z[..., 0, 0] >= ax.patches[0].get_x()) & (draws.z[..., 0, 0] <= ax.patches[-1].get_x() + widths[-1])).float().mean()
        assert abs((heights * widths).sum() - 1.0) < 1e-9 and float(inside) > 0.99
    else:  # the scatter holds the draws of point 0
        np.testing.assert_allclose(ax.collections[0].get_offsets(), draws.z[:, :, 0].flatten(0, 1).numpy())
