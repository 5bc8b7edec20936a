"""The calibration-robustness sweep: per-cell summaries, one batched run per (variant, τ), resume."""

from __future__ import annotations

import pytest

from pyrovae.papers.liu_wang_2025 import calibration_robustness as cr
from pyrovae.papers import get_experiment


def row(rel_err: float, kl: float = 1.0, steps: int = 100, status: str = "converged") -> dict:
    return {"rel_err": rel_err, "kl": kl, "steps": steps, "status": status}


def test_cell_summary_counts():
    rows = [row(0.01), row(0.049), row(0.2, kl=0.001), row(0.06, steps=500, status="max_steps")]
    s = cr.cell_summary(rows, cap=500)
    assert s == {"n": 4, "success": 0.5, "median_rel_err": pytest.approx(0.0545), "collapsed": 0.25,
                 "median_steps": 100, "at_cap": 1}


def tiny(reps: int = 2) -> cr.SweepSettings:
    settings = cr.SweepSettings(quick=True, reps=reps, root_seed=0)
    settings.n, settings.max_steps, settings.oracle_steps, settings.taus, settings.sigma0 = 60, 50, 50, (0.1,), (0.2, 5.0)
    return settings


def test_one_batched_cell_per_variant_and_tau_and_resume(tmp_path, monkeypatch):
    from pyrovae.experiments.registry import ExperimentOptions

    settings = tiny()
    results = cr.sweep(ExperimentOptions(out=tmp_path), settings, variants=("robust", "oracle"))
    robust, oracle = results[("robust", 0.1)], results[("oracle", 0.1)]
    assert [(r["sigma0"], r["seed"]) for r in robust] == [(s0, s) for s0 in (0.2, 5.0) for s in settings.seeds]
    assert len(oracle) == 2 and all(r["status"] == "max_steps" and r["steps"] == 50 for r in oracle)
    assert all(r["status"] in ("converged", "collapsed", "max_steps", "nan") for r in robust)
    assert len(list((tmp_path / "tasks").glob("train_cell-*.json"))) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell is read back, not trained again")

    monkeypatch.setattr(cr, "Trainer", no_training)
    again = ExperimentOptions(out=tmp_path)
    assert cr.sweep(again, settings, variants=("robust", "oracle")) == results
    assert [reused for _, reused in again.task_seconds] == [True, True]


def test_registered_and_never_names_the_seed():
    experiment = get_experiment("calibration-robustness")
    assert "Liu & Wang (2025)" in experiment.source
    assert "Liu & Wang (2025)" not in (experiment.title + experiment.source).lower()


def test_quick_run_writes_the_table_and_the_heat_map(tmp_path):
    from pyrovae.experiments.registry import ExperimentOptions

    report = get_experiment("calibration-robustness").run(ExperimentOptions(out=tmp_path, quick=True))
    assert report.figures[0].is_file() and report.figures[0].name == "success_heatmap.png"
    table = report.tables[0]
    assert "robust τ=0.05 σ₀=0.2" in table.rows and "oracle τ=0.3 σ₀=0.2" in table.rows
    assert len(list((tmp_path / "tasks").glob("train_cell-*.json"))) == 2 * len(cr.VARIANTS)
    assert "Robust variant:" in report.conclusion


def test_dataset_m1_uses_m1_with_the_sec_5_2_networks_and_tau_1():
    data, networks = cr._data_and_networks({"n": 60, "dataset": "m1"}, 1.0)
    assert data.name == "m1" and (data.condition_dim, data.observed_dim) == (5, 1)
    assert networks == {"latent_dim": 5, "encoder_widths": [32, 16, 8, 4], "decoder_widths": [8, 32, 16, 4]}
    data, networks = cr._data_and_networks({"n": 60}, 0.3)  # the key absent: two-moon, default networks
    assert data.name == "two-moon" and data.truth["sigma"] == 0.3 and networks == {}
    settings = tiny(reps=1)
    assert "dataset" not in settings.as_dict()  # two-moon cells keep the keys they were stored under
    settings.dataset = "m1"
    rows = cr.train_cell("oracle", 1.0, settings.as_dict())
    assert len(rows) == 1 and rows[0]["tau"] == 1.0 and rows[0]["steps"] == 50
    assert rows[0]["rel_err"] == pytest.approx(abs(rows[0]["sigma"] - 1.0))


def test_variants_setting_trains_and_reports_only_those_variants(tmp_path):
    from pyrovae.experiments.registry import ExperimentOptions

    options = ExperimentOptions(out=tmp_path, quick=True, overrides={"variants": "oracle,robust", "taus": "0.3"})
    report = get_experiment("calibration-robustness").run(options)
    assert report.tables[0].rows == ["robust τ=0.3 σ₀=0.2", "robust τ=0.3 σ₀=5", "oracle τ=0.3 σ₀=0.2"]
    assert report.settings["variants"] == ["robust", "oracle"]  # the sweep's order, whatever the user's
    assert len(list((tmp_path / "tasks").glob("train_cell-*.json"))) == 2


@pytest.mark.parametrize("overrides", [{"dataset": "mnist"}, {"dataset": "m1", "taus": "0.1"},
                                       {"variants": "robust,vanilla"}])
def test_bad_dataset_settings_are_refused_before_training(tmp_path, overrides):
    from pyrovae.errors import ConfigError
    from pyrovae.experiments.registry import ExperimentOptions

    with pytest.raises(ConfigError):
        get_experiment("calibration-robustness").run(ExperimentOptions(out=tmp_path, quick=True, overrides=overrides))
    assert not (tmp_path / "tasks").exists()
