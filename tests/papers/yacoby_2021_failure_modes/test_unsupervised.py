"""Smoke tests (tiny settings, seconds) for Yacoby, Pan & Doshi-Velez's unsupervised experiments."""

import math

import pytest

from pyrovae.errors import ConfigError
from pyrovae.experiments.registry import ExperimentOptions
from pyrovae.papers import get_experiment
from pyrovae.papers.yacoby_2021_failure_modes.unsupervised import (
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
    from pyrovae.papers.yacoby_2021_failure_modes.unsupervised import fit_batch

    tiny = dict(kind="circle", method="vae", epochs=0.5, n_train=200, n_eval=100, encoder_steps=10, warm_steps=10,
                truth_steps=50, normality_points=50)
    tasks = [dict(tiny, index=0, init="gt", seed=1), dict(tiny, index=1, init="random", seed=2)]
    batch = fit_batch(tasks)
    for task, row in zip(tasks, batch):
        alone = fit_one(**task)
        assert row["index"] == alone["index"] and row["init"] == alone["init"]
        for key in ("val_bound", "test_bound", "sigma2_learned", "knn"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key


# -- selection on validation (Table 2) ------------------------------------------------------------
_TEST_NUMBERS = ("test_bound", "test_neg_elbo", "knn", "knn_n", "knn_alpha", "mi_mean", "hz_pvalue", "hz_normal",
                 "arrays")


class _TestSplitSpy(dict):
    """A run's numbers whose test-split entries raise when read."""

    def __getitem__(self, key):
        if key in _TEST_NUMBERS:
            raise AssertionError(f"selection read the test-split number {key!r}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def _run(index, restart, val, knn):
    return {"index": index, "restart": restart, "init": "gt", "val_bound": val, "knn": knn, "test_bound": val,
            "test_neg_elbo": val, "knn_n": 100, "knn_alpha": 1.0, "mi_mean": 0.0, "hz_pvalue": 0.5, "hz_normal": True,
            "arrays": None}


def test_selection_reads_validation_only_and_ignores_the_test_split():
    from pyrovae.papers.yacoby_2021_failure_modes.unsupervised import select_on_validation

    # "S=3" is better on validation, "S=20" on the test split's smooth kNN: selection must pick S=3
    candidates = {"S=3": [_run(v, j, 1.0 + j, 0.9) for v in range(2) for j in range(2)],
                  "S=20": [_run(v, j, 2.0 + j, 0.1) for v in range(2) for j in range(2)]}
    spied = {k: [_TestSplitSpy(r) for r in runs] for k, runs in candidates.items()}
    hyper, kept = select_on_validation(spied, versions=2)
    assert hyper == "S=3"
    assert [(r["index"], r["restart"]) for r in kept] == [(0, 0), (1, 0)]  # per version the best restart
    # a diverged restart is passed over; a candidate with a version where every restart diverged is never selected
    candidates["S=3"][0]["val_bound"] = float("nan")
    assert select_on_validation(candidates, versions=2) == ("S=3", [candidates["S=3"][1], candidates["S=3"][2]])
    candidates["S=3"][1]["val_bound"] = float("nan")
    assert select_on_validation(candidates, versions=2)[0] == "S=20"


def test_table2_reports_the_validation_choice_not_the_test_best(tmp_path, monkeypatch):
    """End to end: runs whose validation bound prefers one hyper-parameter and whose test statistic prefers
    another; Table 2 must report the first's test statistic."""
    from pyrovae.papers.yacoby_2021_failure_modes import unsupervised as mod

    def fake_runs(groups, options):
        out = {}
        for (kind, label, hyper), tasks in groups.items():
            good_val = hyper in ("S=3", "T=0.05 R=5", "")
            out[(kind, label, hyper)] = [_run(t["index"], t["restart"], 1.0 if good_val else 5.0,
                                              0.5 if good_val else 0.01) for t in tasks]
        return out

    monkeypatch.setattr(mod, "_run_groups", fake_runs)
    rep = table2(ExperimentOptions(out=tmp_path), tiny=True, kinds=("clusters",), iwae_s=(3, 20),
                 lag_grid=((0.05, 5), (0.1, 10)))
    for method in ("IWAE", "LIN", "VAE"):
        assert rep.tables[0].cells[("Clusters", method)].mean == pytest.approx(0.5)
    assert rep.tables[1].cells[("Clusters IWAE S=3", "selected")] == "yes"
