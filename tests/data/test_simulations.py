"""M1-M3 of Liu & Wang (2025, App. F): the closed-form conditional moments against Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.data import make_dataset
from pyrovae.data.simulations import M2_MEAN_FACTOR, M2_SD_FACTOR, m1, m2, m2_code, m3
from pyrovae.errors import ConfigError, DataError

DRAWS = 200_000



def _mc_moments(name: str, x0: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Mean and SD of y at one fixed x0, by simulating the paper's model directly."""
    g = torch.Generator().manual_seed(seed)
    x = x0.double().expand(DRAWS, -1)
    if name == "m1":
        signal = x[:, 0] ** 2 + torch.exp(x[:, 1] + x[:, 2] / 3) + torch.sin(x[:, 3] + x[:, 4])
        y = signal + torch.randn(DRAWS, generator=g, dtype=torch.float64)
    elif name == "m2":
        comp = torch.where(torch.rand(DRAWS, generator=g, dtype=torch.float64) < 0.5, -2.0, 2.0)
        eps = comp + torch.randn(DRAWS, generator=g, dtype=torch.float64)
        y = (5 + x[:, 0] ** 2 / 3 + x[:, 1] ** 2 + x[:, 2] ** 2 + x[:, 3] + x[:, 4]) * torch.exp(0.5 * eps)
    elif name == "m2-code":  # the authors' code: eps ~ N(0, 2^2), exp(eps / 4)
        eps = 2.0 * torch.randn(DRAWS, generator=g, dtype=torch.float64)
        y = (5 + x[:, 0] ** 2 / 3 + x[:, 1] ** 2 + x[:, 2] ** 2 + x[:, 3] + x[:, 4]) * torch.exp(eps / 4)
    else:
        m = 1 + x[:, 0] + 0.5 * x[:, 1]
        u = torch.rand(DRAWS, generator=g, dtype=torch.float64) < 0.7
        z = torch.randn(DRAWS, generator=g, dtype=torch.float64)
        y = torch.where(u, m + z, -m + 0.5 * z)
    return float(y.mean()), float(y.std())


POINTS = {
    "m1": [[0.0] * 5, [1.0, -0.5, 0.3, 2.0, -1.0], [-1.5, 0.8, -1.2, 0.1, 0.4]],
    "m2": [[0.0] * 5, [1.0, -0.5, 0.3, 2.0, -1.0], [-1.5, 0.8, -1.2, -2.0, 0.4]],
    "m3": [[0.0, 0.0], [1.0, -0.5], [-2.0, 1.5]],
}
POINTS["m2-code"] = POINTS["m2"]
FACTORIES = {"m1": m1, "m2": m2, "m2-code": m2_code, "m3": m3}


@pytest.mark.parametrize("name", ["m1", "m2", "m2-code", "m3"])
def test_closed_form_moments_match_monte_carlo(name):
    moments = FACTORIES[name](n=10).truth["moments"]
    for i, point in enumerate(POINTS[name]):
        x0 = torch.tensor([point], dtype=torch.float64)
        mean, sd = moments(x0)
        mc_mean, mc_sd = _mc_moments(name, x0, seed=i)
        # standard error of the MC mean is sd / sqrt(DRAWS); allow 5 of them (M2's SD is heavy-tailed: 2 %)
        assert mc_mean == pytest.approx(float(mean), abs=5 * float(sd) / math.sqrt(DRAWS))
        assert mc_sd == pytest.approx(float(sd), rel=0.02)


def test_m2_factors_from_the_mixture_mgf():
    # E[exp(t eps)] = exp(t^2/2) cosh(2t) for eps ~ 0.5 N(-2,1) + 0.5 N(2,1)
    mgf = lambda t: 0.5 * math.exp(-2 * t + t * t / 2) + 0.5 * math.exp(2 * t + t * t / 2)
    assert M2_MEAN_FACTOR == pytest.approx(mgf(0.5))
    assert M2_SD_FACTOR == pytest.approx(math.sqrt(mgf(1.0) - mgf(0.5) ** 2))


@pytest.mark.parametrize("name, p", [("m1", 5), ("m2", 5), ("m2-code", 5), ("m3", 2)])
def test_generated_data_agree_with_their_truth(name, p):
    d = FACTORIES[name](n=20_000, seed=3) if name == "m2-code" else make_dataset(name, n=20_000, seed=3)
    assert d.condition.shape == (20_000, p) and d.observed.shape == (20_000, 1)
    assert d.truth["mean"].shape == (20_000, 1) and d.truth["sd"].shape == (20_000, 1)
    # standardised residuals have mean 0 and variance 1 when the truth is right
    r = (d.observed - d.truth["mean"]) / d.truth["sd"]
    assert float(r.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(r.var()) == pytest.approx(1.0, abs=0.05)
    # x ~ N(0, I)
    assert d.condition.mean(0).abs().max() < 0.05 and (d.condition.std(0) - 1).abs().max() < 0.05
    # reproducible from the seed, different across seeds
    assert torch.equal(d.observed, make_dataset(name, n=20_000, seed=3).observed)
    assert not torch.equal(d.observed[:5], make_dataset(name, n=20_000, seed=4).observed[:5])


def test_bad_options():
    with pytest.raises(ConfigError):
        m1(n=1)
    with pytest.raises(ConfigError, match="takes no option"):
        make_dataset("m1", n=10, tau=0.1)
    with pytest.raises(DataError):
        m3(n=10).truth["moments"](torch.zeros(4, 5))
