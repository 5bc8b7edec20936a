"""Berger & Sebag (2020) Table 1's LV-VAE row trains the paper's form, σ(z) a second head of the residual
decoder; our extra row keeps the separate σ network. A tiny run of each goes through the experiment's own task.
The runs of one noise kind train as one batch, and each computes the run its seed gives alone."""

from __future__ import annotations

import math

import pytest

from pyrovae.models import HeadNoise, NetworkNoise
from pyrovae.papers.berger_sebag_2020.table1 import (LV_NETWORK, TABLE1_SIGMAS, _build_berger_model, _train_berger,
                                                     second_phase_tasks, table1_tasks)

TINY = dict(width=8, blocks=1, latent_dim=2, steps=20, K=10, lr=2e-3, batch=50, n_eval=100, n_test=200)


def _task(label: str) -> dict:
    """The phase-1 batch that trains ``label``, narrowed to that row's runs."""
    tasks = table1_tasks(TINY, reps=1, root_seed=0, out=None)
    task = next(t for t in tasks if any(run["label"] == label for run in t["runs"]))
    return dict(task, runs=[run for run in task["runs"] if run["label"] == label])


@pytest.mark.parametrize("label, cls", [("LV-VAE", HeadNoise), (LV_NETWORK, NetworkNoise)])
def test_the_lv_vae_rows_build_and_train(label, cls):
    task = _task(label)
    model = _build_berger_model({**task, **task["runs"][0]})
    assert type(model.noise) is cls
    if cls is HeadNoise:
        assert model.noise.features_dim == TINY["width"]  # the residual decoder's last hidden layer
    out = _train_berger(**task)[0]
    assert out["status"] == "max_steps" and out["steps"] == TINY["steps"]
    assert math.isfinite(out["elbo"]) and out["sigma"] > 0
    assert len(out["fig_gen"]) == len(out["fig_gen_mean"]) == 200


def test_each_run_of_a_batched_method_is_the_run_its_seed_gives_alone():
    """Phase 1's fixed σ (one batch per σ, here two σ stacked) and learned σ (LS-VAE), phase 2's per-run σ (F*-VAE) and per-run σ
    schedules (the App. A.2 replay), as batches: each run's ELBO, σ, history and steps are those of the run alone."""
    settings = dict(TINY, steps=30)
    phase1 = table1_tasks(settings, reps=2, root_seed=3, out=None)
    fixed_tasks, ls_task = phase1[:len(TABLE1_SIGMAS)], phase1[len(TABLE1_SIGMAS)]
    assert [t["noise"] for t in phase1] == ["fixed"] * len(TABLE1_SIGMAS) + ["learned", "head", "network"]
    assert [[r["sigma"] for r in t["runs"]] for t in fixed_tasks] == [[s, s] for s in TABLE1_SIGMAS]
    fixed_task = dict(fixed_tasks[0], runs=fixed_tasks[0]["runs"] + fixed_tasks[1]["runs"])  # σ = 1 and 0.3, two seeds each
    ls_runs = _train_berger(**ls_task)
    assert [r["rep"] for r in ls_runs] == [0, 1] and ls_runs[0]["sigma"] != ls_runs[1]["sigma"]
    phase2 = second_phase_tasks(settings, ls_runs, root_seed=3, out=None)
    assert [t["noise"] for t in phase2] == ["fixed", "scheduled"]
    for task in [fixed_task, ls_task, *phase2]:
        batch = ls_runs if task is ls_task else _train_berger(**task)
        assert [(r["label"], r["rep"]) for r in batch] == [(r["label"], r["rep"]) for r in task["runs"]]
        for run, spec in zip(batch, task["runs"]):
            alone = _train_berger(**dict(task, runs=[spec]))[0]
            assert run["steps"] == alone["steps"] == settings["steps"], spec
            assert run["elbo"] == pytest.approx(alone["elbo"], rel=1e-5, abs=1e-6), spec
            assert run["sigma"] == pytest.approx(alone["sigma"], rel=1e-5), spec
            assert run["history_sigma"] == pytest.approx(alone["history_sigma"], rel=1e-5), spec
    for run, ls in zip(_train_berger(**phase2[1]), ls_runs):  # each replay follows its own LS-VAE run's σ
        assert run["history_sigma"] == pytest.approx(ls["history_sigma"], rel=1e-6)
    assert [r["sigma"] for r in _train_berger(**fixed_task)] == pytest.approx([1.0, 1.0, 0.3, 0.3])


def test_a_diverged_ls_vae_run_has_no_second_phase():
    runs = [{"rep": 0, "seed": 5, "status": "nan", "sigma": float("nan"), "history_sigma": []},
            {"rep": 1, "seed": 6, "status": "max_steps", "sigma": 0.2, "history_sigma": [0.5, 0.2]}]
    fstar, replay = second_phase_tasks(TINY, runs, root_seed=0, out=None)
    assert fstar["runs"] == [{"label": "F*-VAE", "rep": 1, "seed": 6, "sigma": 0.2}]
    assert replay["runs"][0]["schedule"] == [1.0, 0.5, 0.2] and len(replay["runs"]) == 1
    assert second_phase_tasks(TINY, runs[:1], root_seed=0, out=None) == []
    ended_early = dict(runs[1], rep=2, seed=7, history_sigma=[0.4])  # padded with its last σ, to stack
    assert second_phase_tasks(TINY, [runs[1], ended_early], 0, None)[1]["runs"][1]["schedule"] == [1.0, 0.4, 0.4]
