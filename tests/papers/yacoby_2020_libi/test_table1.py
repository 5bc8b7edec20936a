"""Smoke test of Yacoby, Pan & Doshi-Velez (2020) Table 1 at a tiny setting (seconds)."""

import math

from pyrovae.papers.yacoby_2020_libi.table1 import TABLE1_METHODS, table1_report

TINY = dict(n=40, steps=40, K=20, lr=0.01, beta=2.0, rounds=1, eps_hz=1.0, S=20, knn_n=10, knn_repeats=3,
            alpha=1.0, val_samples=10)


def test_table1_tiny_runs_every_method():
    kinds = ("linear-jtex", "cubic-jtex")  # the other two data sets: same code path (kept out for time)
    report = table1_report(dict(TINY), kinds=kinds, methods=TABLE1_METHODS, reps=1)
    table = report.tables[0]
    assert "errors" not in report.conclusion.lower() and "Failed" not in report.conclusion
    for kind in kinds:
        for method in TABLE1_METHODS:
            cell = table.cells[(method, f"{kind} S-kNN")]
            assert math.isfinite(cell.mean), (kind, method)
            assert ((method, f"{kind} Test-LL") in table.paper) == (method != "Lagging (He et al.)")
    assert "LinearJTEx" in report.conclusion and "paper" in table.to_markdown()
    assert report.tables[1].cells[("Lagging", "linear-jtex")] == "segments=40"  # App. E's smallest R


def test_cubic_jtex_model_trains_without_overflow():
    """Regression: with a plain ReLU encoder on CubicJTEx's raw scale (x₂ up to ±200) the first float32
    gradient of data set 1 / seed 1 overflowed and the applied step turned A into NaN (a Cholesky error).
    App. E's sigmoid/cube-root encoder keeps the codes, their cube and the gradients finite."""
    import torch

    from pyrovae.data.libi import libi_splits
    from pyrovae.papers.yacoby_2020_libi.table1 import build_model
    from pyrovae.inference.algorithms import FixedSigma
    from pyrovae.inference.objectives import make_elbo
    from pyrovae.inference.trainer import Trainer, TrainSettings

    for index in (0, 1):
        data = libi_splits("cubic-jtex", index=index, n=500)
        y = data["train"].observed
        model = build_model("cubic-jtex", index)
        loss = make_elbo("trace").differentiable_loss(model.model, model.guide, y.new_zeros(500, 0), y)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert math.isfinite(float(loss.detach())) and torch.isfinite(torch.nn.utils.get_total_norm(grads)), index
        model.zero_grad()
        torch.manual_seed(index)
        result = Trainer(model, data["train"], FixedSigma(), TrainSettings(K=50, lr=0.01, max_steps=200, tol=0.0)).run()
        assert result.status == "max_steps", (index, result.status)
        assert torch.isfinite(model.decoder.a).all()


def test_repetitions_of_a_method_train_as_one_batch_equal_to_each_cell_alone(monkeypatch):
    import pytest

    from pyrovae.papers.yacoby_2020_libi import table1
    from pyrovae.papers.yacoby_2020_libi.table1 import _table1_cell, _table1_cells

    def no_fallback(*args, **kwargs):
        raise AssertionError("the batch fell back to one run at a time")

    cfg = dict(TINY, data_seed=0)
    for method in ("VAE", "β-VAE+Anneal", "Lagging", "LiBI"):
        with monkeypatch.context() as patch:
            patch.setattr(table1, "_table1_cell", no_fallback)
            batch = _table1_cells(method, "linear-jtex", [0, 1], [3, 4], cfg)
        for (index, seed), cell in zip(((0, 3), (1, 4)), batch):
            alone = _table1_cell(method, "linear-jtex", index, seed, cfg)
            assert cell["error"] == alone["error"] == ""
            for key in ("ll", "knn", "val_own", "val_ll"):
                assert cell[key] == pytest.approx(alone[key], rel=1e-4), (method, key)


class _TestSpy(dict):
    def __getitem__(self, key):
        if key in ("ll", "knn"):
            raise AssertionError(f"selection read the test-split number {key!r}")
        return super().__getitem__(key)


def test_selection_uses_the_validation_split_only():
    """App. E: per version the restart preferred by its own validation objective, then the hyper-parameters
    with the highest mean validation log-likelihood; the test numbers are never read (they raise here)."""
    from pyrovae.papers.yacoby_2020_libi.table1 import select_table1

    def run(index, own, val_ll, test_ll):
        return _TestSpy(index=index, val_own=own, val_ll=val_ll, ll=test_ll, knn=0.0)

    candidates = {
        # better on validation, worse on test: must be chosen
        "beta=0.5": [run(0, 1.0, -3.0, -9.0), run(0, 2.0, -2.0, 5.0), run(1, 1.0, -3.0, -9.0)],
        "beta=2": [run(0, 1.0, -4.0, 9.0), run(1, 1.0, -4.0, 9.0)],
    }
    label, kept = select_table1(candidates, versions=2)
    assert label == "beta=0.5"
    # version 0 keeps the restart with the lower own objective (1.0), not the one with the higher val_ll
    assert [dict.__getitem__(r, "val_own") for r in kept] == [1.0, 1.0]
    assert [dict.__getitem__(r, "val_ll") for r in kept] == [-3.0, -3.0]


def test_full_grids_follow_app_e():
    from pyrovae.papers.yacoby_2020_libi.table1 import TABLE1_FULL, hyper_grid

    assert [h["segments"] for h in hyper_grid("Lagging", "gaussian-2to4", TABLE1_FULL)] == [5, 10, 15, 20]
    assert len(hyper_grid("LiBI", "linear-jtex", TABLE1_FULL)) == 4 * 2 * 2 * 2
    assert len(hyper_grid("LiBI", "mobius", TABLE1_FULL)) == 3 * 2 * 2 * 2
    assert [h["beta"] for h in hyper_grid("β-VAE", "mobius", TABLE1_FULL)] == [0.5, 2.0, 5.0]
    assert hyper_grid("Lagging (He et al.)", "mobius", TABLE1_FULL) == [{}]
    assert TABLE1_FULL["restarts"] == 10 and TABLE1_FULL["steps"] == 30_000
