"""Berger & Sebag (2020) Table 1's LV-VAE row trains the paper's form, σ(z) a second head of the residual
decoder; our extra row keeps the separate σ network. A tiny run of each goes through the experiment's own task.
Each method's runs train as one batch, and each computes the run its seed gives alone."""

from __future__ import annotations

import math

import pytest

from pyrovae.models import HeadNoise, NetworkNoise
from pyrovae.papers.berger_sebag_2020.table1 import (LV_NETWORK, _build_berger_model, _train_berger, second_phase_tasks,
                                                     table1_tasks)

TINY = dict(width=8, blocks=1, latent_dim=2, steps=20, K=10, lr=2e-3, batch=50, n_eval=100, n_test=200)


def _task(label: str) -> dict:
    tasks = table1_tasks(TINY, reps=1, root_seed=0, out=None)
    return next(t for t in tasks if t["label"] == label)


@pytest.mark.parametrize("label, cls", [("LV-VAE", HeadNoise), (LV_NETWORK, NetworkNoise)])
def test_the_lv_vae_rows_build_and_train(label, cls):
    task = _task(label)
    model = _build_berger_model(task)
    assert type(model.noise) is cls
    if cls is HeadNoise:
        assert model.noise.features_dim == TINY["width"]  # the residual decoder's last hidden layer
    out = _train_berger(**task)[0]
    assert out["status"] == "max_steps" and out["steps"] == TINY["steps"]
    assert math.isfinite(out["elbo"]) and out["sigma"] > 0
    assert len(out["fig_gen"]) == len(out["fig_gen_mean"]) == 200


def _alone(task: dict, r: int) -> dict:
    """Run ``r`` of a batched task as a task of its own."""
    one = dict(task, reps=[task["reps"][r]], seeds=[task["seeds"][r]])
    for key in ("sigma", "schedule"):
        if isinstance(task.get(key), list):
            one[key] = [task[key][r]]
    return _train_berger(**one)[0]


def test_each_run_of_a_batched_method_is_the_run_its_seed_gives_alone():
    """Phase 1's learned σ (LS-VAE) and phase 2's per-run σ (F*-VAE) and per-run σ schedules (the App. A.2
    replay) as batches of two: each run's ELBO, σ, history and steps are those of the run alone."""
    settings = dict(TINY, steps=30)
    ls_task = next(t for t in table1_tasks(settings, reps=2, root_seed=3, out=None) if t["label"] == "LS-VAE")
    ls_runs = _train_berger(**ls_task)
    assert [r["rep"] for r in ls_runs] == [0, 1] and ls_runs[0]["sigma"] != ls_runs[1]["sigma"]
    phase2 = second_phase_tasks(settings, ls_runs, root_seed=3, out=None)
    assert [t["label"] for t in phase2] == ["F*-VAE", "F-VAE, replayed LS σ (App. A.2)"]
    for task in [ls_task, *phase2]:
        batch = ls_runs if task is ls_task else _train_berger(**task)
        for r, run in enumerate(batch):
            alone = _alone(task, r)
            assert run["steps"] == alone["steps"] == settings["steps"], task["label"]
            assert run["elbo"] == pytest.approx(alone["elbo"], rel=1e-5, abs=1e-6), task["label"]
            assert run["sigma"] == pytest.approx(alone["sigma"], rel=1e-5), task["label"]
            assert run["history_sigma"] == pytest.approx(alone["history_sigma"], rel=1e-5), task["label"]
    replay = _train_berger(**phase2[1])
    for run, ls in zip(replay, ls_runs):  # the replay follows its own LS-VAE run's σ, not its batch-mate's
        assert run["history_sigma"] == pytest.approx(ls["history_sigma"], rel=1e-6)


def test_a_diverged_ls_vae_run_has_no_second_phase():
    runs = [{"rep": 0, "seed": 5, "status": "nan", "sigma": float("nan"), "history_sigma": []},
            {"rep": 1, "seed": 6, "status": "max_steps", "sigma": 0.2, "history_sigma": [0.5, 0.2]}]
    tasks = second_phase_tasks(TINY, runs, root_seed=0, out=None)
    assert [t["reps"] for t in tasks] == [[1], [1]] and tasks[0]["sigma"] == [0.2]
    assert tasks[1]["schedule"] == [[1.0, 0.5, 0.2]]
    assert second_phase_tasks(TINY, runs[:1], root_seed=0, out=None) == []
