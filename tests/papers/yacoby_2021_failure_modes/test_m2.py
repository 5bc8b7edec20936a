"""SMOKE: the M2 experiments of Yacoby, Pan & Doshi-Velez (2021, Tables 3-6, the α / γ sweep) run end to end on tiny settings
and write their tables and figures (seconds)."""

from __future__ import annotations

import math

import pytest

from pyrovae.errors import ConfigError, DataError
from pyrovae.experiments.registry import ExperimentOptions
from pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles import fit_m2_semicircle, m2_settings, run_tables
from pyrovae.papers.yacoby_2021_failure_modes.m2_figures import plot_m2_panels


def test_tables_3_4_tiny_smoke(tmp_path):
    options = ExperimentOptions(out=tmp_path, quick=True, reps=1)
    report = run_tables(options, m2_settings(options, tiny=True), methods=("iwae", "lin"))
    t3, t4, diag = report.tables
    assert t3.rows == ["discrete / iwae", "discrete / lin", "continuous / iwae", "continuous / lin"]
    for row in t3.rows:
        assert math.isfinite(t3.cells[(row, "S-kNN p(x)")].mean)
        assert math.isfinite(t4.cells[(row, "cohort 2")].mean)
        assert diag.cells[(row, "collapse score")].mean >= 0
    assert "paper 0.694" in t3.to_markdown() and "paper 1.426" in t4.to_markdown()
    assert "paper 0.703" in t3.to_markdown() and "paper 17.530" in t4.to_markdown()  # the LIN column
    assert [p.name for p in report.figures] == ["figure_m2_discrete.png", "figure_m2_continuous.png"]
    assert all(p.stat().st_size > 10_000 for p in report.figures)
    report.write(tmp_path)
    assert (tmp_path / "table4.csv").exists() and (tmp_path / "curves_discrete.json").exists()


def test_run_curves_and_bad_names(tmp_path):
    out = fit_m2_semicircle("discrete", "vae", **m2_settings(None, tiny=True), curves=True)
    c = out["curves"]
    assert len(c["learned"]) == 2 and len(c["learned"][0]) == 200 and len(c["samples"][1]) == 500
    path = plot_m2_panels({"vae": c}, tmp_path / "f.png")
    assert path.exists() and path.stat().st_size > 10_000
    with pytest.raises(ConfigError):
        fit_m2_semicircle("ordinal", "vae")
    with pytest.raises(ConfigError):
        fit_m2_semicircle("discrete", "lagging")
    with pytest.raises(DataError):
        plot_m2_panels({}, tmp_path / "g.png")


def test_lin_run_trains_aggressively_then_reports():
    """Method ``lin``: Lagging Inference (He et al. 2019) on the factorised guide; the run records its
    aggressive epochs and encoder-only steps (tiny: 2 batches an epoch, at most 4 inner steps each)."""
    settings = {**m2_settings(None, tiny=True), "epochs": 2}
    out = fit_m2_semicircle("discrete", "lin", **settings)
    assert 1 <= out["aggressive_epochs"] <= 2
    assert 2 * out["aggressive_epochs"] * 2 <= out["inner_steps"] <= 2 * out["aggressive_epochs"] * 4
    assert math.isfinite(out["knn_cohort1"]) and 0.0 <= out["q_y"] <= 1.0
    assert "aggressive_epochs" not in fit_m2_semicircle("discrete", "vae", **settings)


def test_sweep_tiny_smoke(tmp_path):
    from pyrovae.papers.yacoby_2021_failure_modes.m2_sweep import run_sweep, sweep_grid

    assert len(sweep_grid(quick=False)) == 24 and len(sweep_grid(quick=True)) == 7
    options = ExperimentOptions(out=tmp_path, quick=True, reps=1)
    report = run_sweep(options, m2_settings(options, tiny=True), [("discrete", 2.0, 0.1)])
    (table,) = report.tables
    assert table.rows == ["discrete / γ=2 / α=0.1"]
    assert math.isfinite(table.cells[("discrete / γ=2 / α=0.1", "collapse score")].mean)
    assert (tmp_path / "runs.json").exists()


def test_sweep_of_one_semicircle_runs_the_same_tasks_as_the_whole_sweep(tmp_path):
    """--set kinds=continuous keeps that semi-circle's rows, and its tasks are the whole sweep's tasks for it (so a
    partial report can be written from a whole run's stored tasks, and the reverse)."""
    from pyrovae.papers import get_experiment

    tiny = {k: str(v) for k, v in m2_settings(None, tiny=True).items() if k not in ("aggressive_inner", "lagging_window")}
    sweep = get_experiment("yacoby-m2-sweep")
    part = sweep.run(ExperimentOptions(out=tmp_path / "part", quick=True, reps=1, overrides={**tiny, "kinds": "continuous"}))
    assert part.tables[0].rows == ["continuous / γ=1 / α=0", "continuous / γ=1 / α=0.1", "continuous / γ=1 / α=1"]
    whole = sweep.run(ExperimentOptions(out=tmp_path / "whole", quick=True, reps=1, overrides=tiny))
    assert len(whole.tables[0].rows) == 7
    names = lambda d: {p.name for p in (tmp_path / d / "tasks").glob("*.json")}
    assert len(names("part")) == 1 and names("part") < names("whole")
    with pytest.raises(ConfigError, match="unknown semi-circle 'circle'"):
        sweep.run(ExperimentOptions(out=tmp_path / "bad", quick=True, overrides={"kinds": "circle"}))


def test_real_tables_tiny_smoke_on_a_user_file(tmp_path, monkeypatch):
    """Tables 5-6 from a user's cmc.data (synthetic rows in the UCI format), no package needed."""
    import numpy as np

    from pyrovae.papers.yacoby_2021_failure_modes.m2_real import (
        _settings,
        available_sets,
        run_real,
    )

    rng = np.random.default_rng(0)
    rows = np.c_[rng.integers(16, 50, 90), rng.integers(1, 5, (90, 7)), rng.integers(0, 2, 90), np.arange(90) % 3 + 1]
    np.savetxt(tmp_path / "cmc.data", rows, fmt="%d", delimiter=",")
    monkeypatch.setenv("PYROVAE_UCI_DIR", str(tmp_path))
    assert "contraceptive" in available_sets()
    options = ExperimentOptions(out=tmp_path / "out", quick=True)
    report = run_real(options, _settings(options, tiny=True), sets=["contraceptive"])
    t5, t6 = report.tables
    assert math.isfinite(t5.cells[("contraceptive / vae", "S-kNN p(x)")].mean)
    assert math.isfinite(t6.cells[("contraceptive / iwae", "cohort 3")].mean)
    assert t6.cells[("titanic / vae", "cohort 1")] == "NA" and "no file" in t5.cells[("retinopathy / vae", "S-kNN p(x)")]


def test_real_runs_of_one_batch_end_as_each_run_alone(tmp_path, monkeypatch):
    """Restarts and (σ², γ, α) settings of a split train as one batch; each row is that run's row alone."""
    import numpy as np

    from pyrovae.papers.yacoby_2021_failure_modes.m2_real import fit_m2_real, fit_m2_reals

    rng = np.random.default_rng(0)
    rows = np.c_[rng.integers(16, 50, 90), rng.integers(1, 5, (90, 7)), rng.integers(0, 2, 90), np.arange(90) % 3 + 1]
    np.savetxt(tmp_path / "cmc.data", rows, fmt="%d", delimiter=",")
    monkeypatch.setenv("PYROVAE_UCI_DIR", str(tmp_path))
    runs = [dict(seed=7, restart=0, sigma2=0.5, gamma=1.0, alpha=1.0), dict(seed=8, restart=1, sigma2=0.01, gamma=2.0,
                                                                            alpha=0.0)]
    batch = fit_m2_reals("contraceptive", "iwae", 0, runs, epochs=2, particles=3, widths=(16, 16))
    for row, run in zip(batch, runs):
        alone = fit_m2_real("contraceptive", "iwae", 0, epochs=2, particles=3, widths=(16, 16), **run)
        assert row["status"] == "done" and row["sigma2"] == run["sigma2"] and row["gamma"] == run["gamma"]
        for key in ("final_loss", "val_objective", "knn_px", "knn_cohort1", "q_y"):
            assert row[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-5), key


def test_discrete_methods_relax_y_and_the_enum_row_enumerates():
    """App. D: every paper method on the discrete set draws y from a Gumbel-softmax at T = 2.2; the extra
    ``-enum`` row sums y exactly, and exists only where y is discrete."""
    from pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles import METHODS, applies

    tiny = m2_settings(None, tiny=True)
    out = fit_m2_semicircle("discrete", "iwae", **tiny)
    assert out["labels"] == "relaxed" and math.isfinite(out["knn_px"]) and 0.0 <= out["q_y"] <= 1.0
    assert fit_m2_semicircle("discrete", "iwae-enum", **tiny)["labels"] == "enumerated"
    assert {m for m, spec in METHODS.items() if spec[4] == "relaxed"} == {"vae", "iwae", "iwae-s20", "lin"}
    assert not applies("continuous", "iwae-enum") and applies("continuous", "iwae")
    with pytest.raises(ConfigError, match="enumerates"):
        fit_m2_semicircle("continuous", "iwae-enum", **tiny)


@pytest.mark.parametrize("method", ["vae", "iwae-enum"])
def test_the_starts_of_a_batch_end_as_each_start_alone(method):
    """A task's starts (here with their own γ and α, as grid cells) train as one batch; each start's row is the
    row of that start run alone."""
    from pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles import fit_m2_semicircles

    tiny = m2_settings(None, tiny=True) | {"epochs": 2}
    batch = fit_m2_semicircles("discrete", method, seeds=(11, 12), inits=("gt", "random"), gamma=[1.0, 2.0],
                               alpha=[1.0, 0.0], **tiny)
    for row, (seed, init, gamma, alpha) in zip(batch, ((11, "gt", 1.0, 1.0), (12, "random", 2.0, 0.0))):
        alone = fit_m2_semicircle("discrete", method, seed=seed, init=init, gamma=gamma, alpha=alpha, **tiny)
        assert row["status"] == alone["status"] == "done" and row["init"] == init
        assert (row["gamma"], row["alpha"]) == (gamma, alpha)
        for key in ("final_loss", "val_objective", "knn_px", "knn_cohort1", "collapse", "collapse_init"):
            assert row[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-5), key


class _TestSpy(dict):
    def __getitem__(self, key):
        if key in ("knn_px", "knn_cohort1", "knn_cohort2", "collapse", "q_y"):
            raise AssertionError(f"selection read the test-split number {key!r}")
        return super().__getitem__(key)


def test_m2_selection_reads_validation_only():
    from pyrovae.papers.yacoby_2021_failure_modes.m2_semicircles import m2_grid, select_m2

    assert len(m2_grid("vae", True)) == 12 and len(m2_grid("iwae", True)) == 36 and len(m2_grid("lin", True)) == 48
    assert m2_grid("iwae", False) == [{}]

    def run(version, val_j, val_knn, knn):
        return _TestSpy(version=version, val_objective=val_j, val_knn_px=val_knn, knn_px=knn)

    cands = {"γ=1, α=1": [run(0, 0.5, 2.0, 0.1), run(0, 0.4, 3.0, 0.1), run(1, 0.5, 3.0, 0.1)],
             "γ=5, α=0": [run(0, 0.9, 1.0, 9.0), run(1, 0.9, 1.0, 9.0)]}
    label, kept = select_m2(cands, [0, 1])
    assert label == "γ=5, α=0"  # the better validation smooth kNN, whatever the test split says
    label, kept = select_m2({"only": cands["γ=1, α=1"]}, [0, 1])
    assert [dict.__getitem__(r, "val_objective") for r in kept] == [0.4, 0.5]  # per version the best -J


def test_m2_tables_report_the_validation_choice(tmp_path, monkeypatch):
    """With the grid on, rows report the setting chosen on validation although another is better on test."""
    from pyrovae.papers.yacoby_2021_failure_modes import m2_semicircles as mod

    def fake(fn, tasks, jobs=1):
        out = []
        for t in tasks:  # one batch of starts per task
            good = t["gamma"] == 2.0 and t["alpha"] == 0.1
            out.append([dict(kind=t["kind"], method=t["method"], version=t["version"], val_objective=1.0,
                             val_knn_px=0.5 if good else 1.0, knn_px=5.0 if good else 0.01, knn_cohort1=1.0,
                             knn_cohort2=1.0, collapse_init=1.0, collapse=1.0, q_y=0.5, val_elbo=1.0,
                             decoder_mse=0.0, curves=None) for _ in t["seeds"]])
        return out

    monkeypatch.setattr(mod, "map_tasks", fake)
    monkeypatch.setattr("pyrovae.papers.yacoby_2021_failure_modes.m2_figures.plot_m2_panels", lambda *a, **k: tmp_path / "f.png")
    options = ExperimentOptions(out=tmp_path, reps=2)
    settings = dict(m2_settings(options, tiny=True), grid=True, starts=("gt", "random"))
    report = run_tables(options, settings, methods=("vae",), kinds=("discrete",))
    assert report.tables[0].cells[("discrete / vae", "S-kNN p(x)")].mean == pytest.approx(5.0)
    assert "γ=2, α=0.1" in report.tables[2].note


def test_real_selection_reads_validation_only():
    from pyrovae.papers.yacoby_2021_failure_modes.m2_real import real_grid, select_real

    full = dict(sigma2s=(0.01, 0.5), particles=10, grid=True)
    assert len(real_grid("titanic", "iwae", full)) == 2 * 4 * 3 * 3 * 2 and len(real_grid("titanic", "vae", full)) == 48
    assert real_grid("titanic", "vae", dict(sigma2s=(0.01, 0.5), particles=10)) == [
        {"sigma2": 0.01, "particles": 10}, {"sigma2": 0.5, "particles": 10}]

    def run(sigma2, restart, val_j, val_knn, knn):
        return _TestSpy(sigma2=sigma2, gamma=1.0, alpha=1.0, particles=10, latent_dim=1, restart=restart,
                        val_objective=val_j, val_knn_px=val_knn, knn_px=knn)

    runs = [run(0.01, 0, 1.0, 3.0, 0.1), run(0.01, 1, 0.5, 2.0, 0.1), run(0.5, 0, 0.7, 2.5, 9.0),
            run(0.5, 1, 0.9, 0.1, 9.0)]
    # restarts by -J: 0.01 keeps restart 1 (val kNN 2.0), 0.5 keeps restart 0 (2.5); then the lower val kNN
    best = select_real(runs)
    assert (dict.__getitem__(best, "sigma2"), dict.__getitem__(best, "restart")) == (0.01, 1)
