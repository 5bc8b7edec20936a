"""Smoke tests (tiny settings, seconds) for seed 001's unsupervised experiments."""

import math

import pytest

from pyrovae.errors import ConfigError
from pyrovae.experiments.registry import ExperimentOptions, get_experiment
from pyrovae.experiments.yacoby2021_unsupervised import (
    appendix_e2,
    fit_one,
    spiral_noise,
    table1,
    table2,
)


def test_registered():
    for name in ("yacoby-table2", "yacoby-spiral-noise", "yacoby-table1", "yacoby-appendix-e2"):
        assert get_experiment(name).name == name


def test_table2_smoke(tmp_path):
    rep = table2(ExperimentOptions(out=tmp_path), tiny=True, kinds=("clusters",), iwae_s=(3,), lag_grid=((0.05, 5),))
    cell = rep.tables[0].cells[("Clusters", "IWAE")]
    assert math.isfinite(cell.mean) and rep.tables[0].paper[("Clusters", "VAE")] == "0.361 ± 0.083"
    assert math.isfinite(rep.tables[0].cells[("Clusters", "true p(x) (floor)")].mean)
    assert "alpha = 1.0" in rep.tables[0].note
    assert "normal" in rep.tables[1].cells[("Clusters LIN T=0.05 R=5", "residuals normal (HZ)")]
    assert [p.name for p in rep.figures] == ["fig5_table2_density.png"] and rep.figures[0].stat().st_size > 10_000
    rep.write(tmp_path)
    assert (tmp_path / "report.md").exists()


def test_appendix_e2_smoke(tmp_path):
    rep = appendix_e2(ExperimentOptions(out=tmp_path), tiny=True)
    t = rep.tables[0]
    assert math.isfinite(t.cells[("Circle", "VAE from random")].mean)
    assert {p.name for p in rep.figures} == {"fig5cd_appendix_e2_density.png", "fig7_projection.png"}
    assert all(p.stat().st_size > 10_000 for p in rep.figures)
    assert "App. F check" in t.note


def test_spiral_smoke(tmp_path):
    rep = spiral_noise(ExperimentOptions(out=tmp_path), tiny=True)
    t = rep.tables[0]
    assert all(math.isfinite(v.mean) and v.mean > 0 for k, v in t.cells.items() if k[1] == "sigma^2_eps")
    assert "0.014" in t.to_markdown()
    assert rep.figures and rep.figures[0].exists()


def test_table1_smoke(tmp_path):
    rep = table1(ExperimentOptions(out=tmp_path), tiny=True, kinds=("figure8",), ks=(1, 2), iwae_s=3)
    assert len(rep.tables) == 2
    assert math.isfinite(rep.tables[0].cells[("Test avg_i I(x; z_i)", "Figure-8 K=2")].mean)


def test_bad_input():
    with pytest.raises(ConfigError):
        fit_one("circle", "gan")
    with pytest.raises(ConfigError):
        fit_one("circle", "vae", latent_dim=2, init="gt", n_train=20, n_eval=10)
    with pytest.raises(ConfigError):
        fit_one("circle", "vae", sigma_factor=0.0)


def test_a_batch_of_runs_equals_each_run_alone():
    """Data versions and starts of one method train as one batch; each equals fit_one alone."""
    from pyrovae.experiments.yacoby2021_unsupervised import fit_batch

    tiny = dict(kind="circle", method="vae", epochs=0.5, n_train=200, n_eval=100, encoder_steps=10, warm_steps=10,
                truth_steps=50, normality_points=50)
    tasks = [dict(tiny, index=0, init="gt", seed=1), dict(tiny, index=1, init="random", seed=2)]
    batch = fit_batch(tasks)
    for task, row in zip(tasks, batch):
        alone = fit_one(**task)
        assert row["index"] == alone["index"] and row["init"] == alone["init"]
        for key in ("val_bound", "test_bound", "sigma2_learned", "knn"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
