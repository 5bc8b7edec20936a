"""Berger & Sebag (2020) Table 1's LV-VAE row trains the paper's form, σ(z) a second head of the residual
decoder; our extra row keeps the separate σ network. A tiny run of each goes through the experiment's own task."""

from __future__ import annotations

import math

import pytest

from pyrovae.models import HeadNoise, NetworkNoise
from pyrovae.papers.berger_sebag_2020.table1 import LV_NETWORK, _build_berger_model, _train_berger, table1_tasks

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
    out = _train_berger(**dict(task, figure=True))
    assert out["status"] == "max_steps" and out["steps"] == TINY["steps"]
    assert math.isfinite(out["elbo"]) and out["sigma"] > 0
    assert len(out["fig_gen"]) == len(out["fig_gen_mean"]) == 200
