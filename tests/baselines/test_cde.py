"""Conditional density baselines of Liu & Wang (2025) Table 3: moments by integration, CKDE against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from pyrovae.baselines import baseline_available, density_moments, make_baseline, y_grid
from pyrovae.baselines.cde import paper_bandwidth
from pyrovae.errors import DataError, UnknownNameError


def test_density_moments_of_known_densities():
    grid = np.linspace(-10, 14, 4001)
    dens = np.stack([norm.pdf(grid, 2.0, 1.5), 0.3 * norm.pdf(grid, -1, 0.5) + 0.7 * norm.pdf(grid, 1, 1.0)])
    mean, sd = density_moments(grid, 3.0 * dens)  # unnormalised input is renormalised
    assert mean == pytest.approx([2.0, 0.4], abs=1e-6)
    assert sd == pytest.approx([1.5, np.sqrt(0.775 + 0.84)], abs=1e-6)  # the M3 mixture at m = 1
    with pytest.raises(DataError):
        density_moments(grid, np.zeros((1, grid.size)))


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = x[:, 0] + 0.5 * rng.normal(size=n)
    return x, y


def test_paper_bandwidth_by_hand():
    # Liu & Wang App. F: h = 1.06 σ n^(-1/(2t + d)), t = 2 (Gaussian kernel), d = dim X.
    # y = 1, 2, 3, 4: σ = √1.25 = 1.1180340; x = 0, 0, 2, 2: σ = 1; n = 4, d = 1: 4^(-1/5) = 0.7578583.
    h = paper_bandwidth(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 2.0], [4.0, 2.0]]), condition_dim=1)
    assert h == pytest.approx([1.06 * 1.1180340 * 0.7578583, 1.06 * 0.7578583], rel=1e-6)
    assert h == pytest.approx([0.8981500, 0.8033298], rel=1e-6)
    # Table 3's M1 / M2 (n = 5,000, d = 5): n^(-1/9) = 0.3881533, not statsmodels' n^(-1/10) = 0.4266807
    ones = np.tile([[0.0], [2.0]], (2500, 1))  # σ = 1
    assert paper_bandwidth(ones, condition_dim=5) == pytest.approx([1.06 * 0.3881533], rel=1e-6)
    ckde = make_baseline("ckde").fit(np.tile([[0.0], [2.0]], (2, 1)), np.array([1.0, 2.0, 3.0, 4.0]))
    assert (ckde.h_y, *ckde.h_x) == pytest.approx([0.8981500, 0.8033298], rel=1e-6)


def test_ckde_paper_bandwidth_density_matches_statsmodels_with_the_same_bandwidths():
    pytest.importorskip("statsmodels")
    from statsmodels.nonparametric.kernel_density import KDEMultivariateConditional

    x, y = _data()
    ckde = make_baseline("ckde").fit(x, y)
    assert ckde.h_y == pytest.approx(1.06 * np.std(y) * 300 ** (-1 / 6))  # d = 2
    theirs_kde = KDEMultivariateConditional(endog=y[:, None], exog=x, dep_type="c", indep_type="cc",
                                            bw=[ckde.h_y, *ckde.h_x])
    xt, grid = np.array([[0.0, 0.0], [1.0, -0.5]]), np.array([-1.0, 0.0, 0.7, 1.5])
    ours = ckde.density(xt, grid)
    for i in range(2):
        theirs = theirs_kde.pdf(endog_predict=grid[:, None], exog_predict=np.repeat(xt[i:i + 1], 4, 0))
        assert ours[i] == pytest.approx(theirs, rel=1e-8)


def test_ckde_matches_statsmodels_pdf():
    pytest.importorskip("statsmodels")
    x, y = _data()
    ckde = make_baseline("ckde", bandwidth="normal_reference").fit(x, y)
    xt = np.array([[0.0, 0.0], [1.0, -0.5]])
    grid = np.array([-1.0, 0.0, 0.7, 1.5])
    ours = ckde.density(xt, grid)
    for i in range(2):
        theirs = ckde.statsmodels_kde.pdf(endog_predict=grid[:, None], exog_predict=np.repeat(xt[i:i + 1], 4, 0))
        assert ours[i] == pytest.approx(theirs, rel=1e-8)
    # normal_reference bandwidth: 1.06 sd n^(-1/(4 + 3)) per column
    assert ckde.h_y == pytest.approx(1.06 * np.std(y) * 300 ** (-1 / 7))


@pytest.mark.parametrize("name", ["nnkcde", "flexcode"])
def test_optional_baselines_give_densities(name):
    ok, why = baseline_available(name)
    if not ok:
        pytest.skip(why)
    x, y = _data(400)
    options = {"nnkcde": dict(k_grid=(30,), bandwidth_grid=(0.2,)), "flexcode": dict(k_grid=(10,), max_basis=10)}
    est = make_baseline(name, **options[name]).fit(x, y)
    grid = y_grid(y, 256)
    mean, sd = density_moments(grid, est.density(np.array([[0.0, 0.0], [1.0, 0.0]]), grid))
    assert mean[1] - mean[0] == pytest.approx(1.0, abs=0.5) and np.all(sd > 0.2) and np.all(sd < 1.5)


def test_availability_and_names():
    assert baseline_available("ckde") == (True, "")  # the paper's bandwidth needs no package
    with pytest.raises(UnknownNameError):
        baseline_available("wgcs")
    with pytest.raises(UnknownNameError):
        make_baseline("wgcs")
    with pytest.raises(DataError, match="univariate"):
        make_baseline("ckde").fit(np.zeros((5, 1)), np.zeros((5, 2)))
