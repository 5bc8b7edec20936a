"""Yacoby, Pan & Doshi-Velez (2021) App. G generators against their formulas."""

import math

import pytest
import torch

from pyrovae.data.registry import make_dataset
from pyrovae.data.yacoby_unsupervised import (
    A_EMBED, CLUSTER_ANGLES, KINDS, NOISE_VAR, clusters_f, figure8_f, ground_truth, spiral_f, yacoby_splits,
)
from pyrovae.errors import ConfigError, UnknownNameError

SMALL = {"train": 400, "validation": 50, "test": 50}


def test_figure8_is_a_lemniscate():
    z = torch.linspace(-4, 4, 401, dtype=torch.float64)
    f = figure8_f(z)
    X, Y = math.sqrt(2) * f[:, 0], f[:, 1] / math.sqrt(2)
    assert torch.allclose((X**2 + Y**2) ** 2, X**2 - Y**2, atol=1e-12)
    # far tails and z = 0 all map near the crossing x = 0
    near = figure8_f(torch.tensor([-4.0, 0.0, 4.0], dtype=torch.float64))
    assert near.norm(dim=-1).max() < 0.3  # vs. the curve's extent of about 0.7


def test_figure8_points_lie_on_the_curve_up_to_the_noise():
    d = yacoby_splits("figure8", sizes=SMALL)["train"]
    resid = d.observed.double() - d.truth["fz"].double()
    assert resid.var(0).sub(NOISE_VAR["figure8"]).abs().max() < 0.006
    assert abs(float(resid.mean(0).abs().max())) < 0.03


def test_clusters_modes():
    # plateaus at t = 4k: points with z on a fine grid pile up at angles 0, 4, 8, 12
    z = torch.randn(20000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = clusters_f(z)
    angles = torch.tensor(CLUSTER_ANGLES, dtype=torch.float64)
    centres = torch.stack([angles.cos(), angles.sin()], -1)
    dist = torch.cdist(f, centres).min(-1).values
    assert (dist < 0.1).float().mean() > 0.8  # most of the mass sits in the four clusters
    for c in centres:  # and every cluster is populated
        assert ((f - c).norm(dim=-1) < 0.1).float().mean() > 0.05
    assert torch.allclose(f.norm(dim=-1), torch.ones_like(z))


def test_spiral_radius_is_its_angle():
    z = torch.linspace(-3, 3, 101, dtype=torch.float64)
    f = spiral_f(z)
    r = f.norm(dim=-1)
    t = torch.atan2(f[:, 1], f[:, 0])
    assert torch.allclose(torch.cos(r), torch.cos(t), atol=1e-6) and torch.allclose(torch.sin(r), torch.sin(t), atol=1e-6)


def test_embedding_uses_the_stated_matrix():
    assert A_EMBED.tolist() == [[1.0, 0.0, 0.5, 0.2, -0.8], [0.0, 1.0, -0.5, 0.3, -0.1]]
    f5, var = ground_truth("clusters", embed=True)
    z = torch.randn(10, 1, dtype=torch.float64)
    assert torch.allclose(f5(z), clusters_f(z) @ A_EMBED)
    d = yacoby_splits("figure8", embed=True, sizes=SMALL)["train"]
    assert d.observed_dim == 5 and d.condition_dim == 0
    assert torch.allclose(d.truth["fz"].double(), figure8_f(d.truth["z"].double()) @ A_EMBED, atol=1e-5)


def test_splits_versions_and_registry():
    s = yacoby_splits("circle", index=1)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [5000, 2000, 2000]
    again = yacoby_splits("circle", index=1)["test"]
    other = yacoby_splits("circle", index=2)["test"]
    assert torch.equal(s["test"].observed, again.observed) and not torch.equal(s["test"].observed, other.observed)
    for kind in KINDS:
        d = make_dataset(f"yacoby-{kind}", n=20, split="validation")
        assert d.observed.shape == (20, 2) and d.truth["noise_var"] == NOISE_VAR[kind]
    with pytest.raises(UnknownNameError):
        yacoby_splits("square")
    with pytest.raises(ConfigError):
        yacoby_splits("circle", index=-1)
    with pytest.raises(ConfigError):
        make_dataset("yacoby-circle", split="dev")
