"""The M2 trainer and the functional-collapse diagnostics (seed 001, Sec. 7)."""

from __future__ import annotations

import pytest
import torch

from pyrovae.data.yacoby_m2 import continuous_semicircle, discrete_semicircle, semicircle_f
from pyrovae.errors import ConfigError
from pyrovae.inference.m2_training import train_m2
from pyrovae.metrics.semisupervised import cohort_knn, decoder_spread, functional_collapse, label_accuracy
from pyrovae.models.m2 import M2


@pytest.mark.parametrize("kind,objective", [("discrete", "elbo"), ("discrete", "iwae"), ("relaxed", "elbo"),
                                            ("continuous", "elbo"), ("continuous", "iwae")])
def test_training_lowers_the_loss(kind, objective):
    make = continuous_semicircle if kind == "continuous" else discrete_semicircle
    data = make(n=200, seed=0)
    model = M2(2, kind, widths=(16, 16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_m2(model, data, objective, epochs=4, batch_size=50, lr=1e-2, alpha=1.0, particles=3)
    losses = [r["loss"] for r in res.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trainer_rejects_bad_options():
    data = discrete_semicircle(n=50)
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, "renyi")
    with pytest.raises(ConfigError):
        train_m2(M2(2), data, epochs=0)


def test_collapse_score_is_zero_for_a_decoder_that_ignores_y():
    torch.manual_seed(0)
    model = M2(2, "discrete", widths=(8,))
    assert decoder_spread(model, 0, 1) > 0
    with torch.no_grad():
        model.decoder[0].weight[:, model.latent_dim:] = 0.0  # the first layer no longer reads y
    s = functional_collapse(model, lambda z, y: semicircle_f(z, y), 0, 1)
    assert s.learned == 0.0 and s.score == 0.0 and 0.5 < s.truth < 2.0


def test_label_accuracy_and_cohort_knn():
    torch.manual_seed(0)
    data = discrete_semicircle(n=100)
    model = M2(2, "discrete", widths=(8,))
    acc = label_accuracy(model, data.points, data.labels)["accuracy"]
    assert 0.0 <= acc <= 1.0
    c = M2(2, "continuous", widths=(8,))
    out = label_accuracy(c, data.points, data.labels * 2 - 1)
    assert set(out) == {"rmse", "sign_accuracy"}
    ref = data.points[:40]
    assert cohort_knn(model, 0, ref) > cohort_knn(model, 0, ref) - 1e-9  # deterministic given the seed
