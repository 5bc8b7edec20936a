"""Ground-truth initialisation of M2 (Yacoby, Pan & Doshi-Velez 2021, App. D): decoder by regression, guide with the decoder
frozen, the restart with the best validation objective kept."""

from __future__ import annotations

import pytest
import torch

from pyrovae.data.yacoby_m2 import (
    continuous_semicircle,
    discrete_semicircle,
    semicircle_f,
)
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.m2_init import fit_m2_decoder, init_m2_at_ground_truth
from pyrovae.inference.m2_training import m2_objective, train_m2
from pyrovae.models.m2 import M2


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_decoder_regression_recovers_the_true_f(kind):
    make = discrete_semicircle if kind == "discrete" else continuous_semicircle
    data = make(n=1000, seed=0)
    torch.manual_seed(0)
    model = M2(2, kind, widths=(32, 32))
    z, y = data.truth["z"].float(), data.labels
    fz = semicircle_f(z.reshape(-1), y.reshape(-1), kind)
    mse, _ = fit_m2_decoder(model, z, y, fz, target_mse=1e-3, max_steps=4000, lr=3e-3)
    assert mse < 1e-3
    with torch.no_grad():  # the fitted decoder is f at the data's own codes and labels
        yy = y.reshape(-1).long() if kind == "discrete" else y
        err = (model.decode(z, yy) - fz).pow(2).mean().item()
    assert err == pytest.approx(mse, rel=1e-4)


def test_encoder_only_training_keeps_the_decoder():
    data = discrete_semicircle(n=200, seed=1)
    model = M2(2, widths=(8,))
    dec = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    enc = {k: v.clone() for k, v in model.z_encoder_x.state_dict().items()}
    train_m2(model, data, epochs=2, batch_size=50, lr=1e-2, alpha=1.0, parameters="encoder")
    assert all(torch.equal(dec[k], v) for k, v in model.decoder.state_dict().items())
    assert any(not torch.equal(enc[k], v) for k, v in model.z_encoder_x.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards


def test_init_keeps_the_best_restart_on_validation():
    train, val = discrete_semicircle(n=300, seed=2), discrete_semicircle(n=200, seed=3)
    torch.manual_seed(0)
    model = M2(2, widths=(16, 16))
    info = init_m2_at_ground_truth(model, train, lambda z, y: semicircle_f(z, y), val, restarts=3, alpha=1.0,
                                   decoder_steps=300, encoder_epochs=2, lr=3e-3, seed=4)
    assert len(info.validation_objectives) == 3
    assert info.best_restart == min(range(3), key=info.validation_objectives.__getitem__)
    # the model is left at that restart: its validation objective is recomputed exactly (same seed)
    assert m2_objective(model, val, "elbo", 1.0, 1.0, seed=4) == pytest.approx(min(info.validation_objectives), rel=1e-6)


def test_a_seeds_decoder_fit_is_reused_with_the_same_weights():
    """The decoder regression depends on the seed and the data only: a second start of the same seed (here with
    another α, as the cells of a sweep) loads the first one's fit, and ends exactly where fitting it again ends."""
    train, val = discrete_semicircle(n=200, seed=2), discrete_semicircle(n=100, seed=3)
    f = lambda z, y: semicircle_f(z, y)

    def start(alpha: float, decoders=None) -> tuple[M2, object]:
        torch.manual_seed(5)
        model = M2(2, widths=(8, 8))
        info = init_m2_at_ground_truth(model, train, f, val, restarts=2, alpha=alpha, decoder_steps=150,
                                       encoder_epochs=1, lr=3e-3, seed=5, decoders=decoders)
        return model, info

    decoders: dict = {}
    start(1.0, decoders)
    assert list(decoders) == [(5, 150, 3e-3)]
    reused, info_reused = start(0.1, decoders)
    after_reused = torch.rand(3)  # what the code after a start draws from the global generator
    fitted, info_fitted = start(0.1)
    after_fitted = torch.rand(3)
    assert info_reused == info_fitted and info_fitted.decoder_steps > 0
    assert all(torch.equal(v, fitted.state_dict()[k]) for k, v in reused.state_dict().items())
    assert torch.equal(after_reused, after_fitted)


def test_init_bad_input():
    data = discrete_semicircle(n=50)
    with pytest.raises(ConfigError):
        init_m2_at_ground_truth(M2(2), data, semicircle_f, data, restarts=0)
    with pytest.raises(ConfigError):
        fit_m2_decoder(M2(2, latent_dim=2), data.truth["z"], data.labels, data.points)
    data.truth.pop("z")
    with pytest.raises(DataError):
        init_m2_at_ground_truth(M2(2), data, semicircle_f, data)


def test_a_restart_trained_in_the_batch_is_the_restart_trained_alone():
    """Restart 0 is seeded seed + 1 whether two more restarts share its batch or not."""
    train, val = discrete_semicircle(n=300, seed=2), discrete_semicircle(n=200, seed=3)
    values = []
    for restarts in (1, 3):
        torch.manual_seed(0)
        model = M2(2, widths=(16, 16))
        info = init_m2_at_ground_truth(model, train, lambda z, y: semicircle_f(z, y), val, restarts=restarts,
                                       alpha=1.0, decoder_steps=300, encoder_epochs=2, lr=3e-3, seed=4)
        values.append(info.validation_objectives)
    assert values[1][0] == pytest.approx(values[0][0], rel=1e-5)
    assert len(set(values[1])) == 3  # the restarts differ
