"""SMOKE: the M2 experiments of seed 001 (Tables 3-6, the α / γ sweep) run end to end on tiny settings
and write their tables and figures (seconds)."""

from __future__ import annotations

import math

import pytest

from pyrovae.errors import ConfigError, DataError
from pyrovae.experiments.registry import ExperimentOptions
from pyrovae.experiments.yacoby2021_m2 import fit_m2_semicircle, m2_settings, run_tables
from pyrovae.experiments.yacoby2021_m2_figures import plot_m2_panels


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
    from pyrovae.experiments.yacoby2021_m2_sweep import run_sweep, sweep_grid

    assert len(sweep_grid(quick=False)) == 24 and len(sweep_grid(quick=True)) == 7
    options = ExperimentOptions(out=tmp_path, quick=True, reps=1)
    report = run_sweep(options, m2_settings(options, tiny=True), [("discrete", 2.0, 0.1)])
    (table,) = report.tables
    assert table.rows == ["discrete / γ=2 / α=0.1"]
    assert math.isfinite(table.cells[("discrete / γ=2 / α=0.1", "collapse score")].mean)
    assert (tmp_path / "runs.json").exists()


def test_real_tables_tiny_smoke_on_a_user_file(tmp_path, monkeypatch):
    """Tables 5-6 from a user's cmc.data (synthetic rows in the UCI format), no package needed."""
    import numpy as np

    from pyrovae.experiments.yacoby2021_m2_real import (
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


def test_discrete_methods_relax_y_and_the_enum_row_enumerates():
    """App. D: every paper method on the discrete set draws y from a Gumbel-softmax at T = 2.2; the extra
    ``-enum`` row sums y exactly, and exists only where y is discrete."""
    from pyrovae.experiments.yacoby2021_m2 import METHODS, applies

    tiny = m2_settings(None, tiny=True)
    out = fit_m2_semicircle("discrete", "iwae", **tiny)
    assert out["labels"] == "relaxed" and math.isfinite(out["knn_px"]) and 0.0 <= out["q_y"] <= 1.0
    assert fit_m2_semicircle("discrete", "iwae-enum", **tiny)["labels"] == "enumerated"
    assert {m for m, spec in METHODS.items() if spec[4] == "relaxed"} == {"vae", "iwae", "iwae-s20", "lin"}
    assert not applies("continuous", "iwae-enum") and applies("continuous", "iwae")
    with pytest.raises(ConfigError, match="enumerates"):
        fit_m2_semicircle("continuous", "iwae-enum", **tiny)
