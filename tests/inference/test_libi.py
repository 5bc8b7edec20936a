"""LiBI (Yacoby, Pan & Doshi-Velez 2020, Sec. 2, App. D) on a tiny LinearJTEx."""

import pytest
import torch

from pyrovae.data.libi import A_JTEX, B_JTEX, libi_splits
from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import FixedSigma
from pyrovae.inference.libi import LiBI, LiBISettings, libi_penalty
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.metrics.normality import henze_zirkler
from pyrovae.models.linear import CholeskyDecoder, linear_vae
from pyrovae.posterior.exact import LinearGaussian

TRUE_COV = A_JTEX @ A_JTEX.T + 0.01 * torch.eye(2, dtype=torch.float64)


def _whitened(n=300, seed=0):
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    chol = torch.linalg.cholesky(z.T @ z / n)
    return torch.linalg.solve_triangular(chol, z.T, upper=False).T


def test_penalties_vanish_at_standard_normal_codes():
    parts = libi_penalty(_whitened(), parts=True)
    assert float(parts["mean"]) < 1e-20 and float(parts["cov"]) < 1e-20
    assert float(parts["hz"]) < 1.5  # a normal sample: HZ near its null mean (about 1)
    assert float(libi_penalty(_whitened(), eps_hz=0.0)) == pytest.approx(0.0, abs=1e-12)
    shifted = libi_penalty(_whitened() * 0.3 + 1.0, parts=True)
    assert float(shifted["total"]) > 10 * float(parts["total"])
    with pytest.raises(ConfigError):
        LiBISettings(rounds=0)


def _model(seed):
    torch.manual_seed(seed)
    return linear_vae(CholeskyDecoder(torch.randn(2, 2, dtype=torch.float64), B_JTEX, 0.1, learn="A")).float()


def _cov_error(model):
    return float((LinearGaussian.from_decoder(model.decoder).marginal_cov() - TRUE_COV).norm())


def test_libi_loop_runs_and_keeps_the_best_round():
    data = libi_splits("linear-jtex", n=100, seed=3)
    model = _model(0)
    start = _cov_error(model)
    result = LiBI(model, LiBISettings(rounds=2, step1_steps=100, step2_steps=30, lr=0.03, val_samples=20)).fit(
        data["train"], data["validation"])
    assert len(result.history) == 2 and result.best_round in (0, 1)
    assert result.val_log_lik == max(h["val_log_lik"] for h in result.history)
    assert _cov_error(result.model) < start


@pytest.mark.slow
def test_libi_recovers_the_marginal_at_least_as_well_as_the_vae():
    data = libi_splits("linear-jtex", n=200, seed=3)
    train = data["train"]
    libi = LiBI(_model(0), LiBISettings(rounds=2, step1_steps=3000, step2_steps=1000, lr=0.01, val_samples=50))
    result = libi.fit(train, data["validation"])
    vae = _model(0)
    Trainer(vae, train, FixedSigma(), TrainSettings(K=100, lr=0.01, max_steps=8000, tol=0.0)).run()
    libi_err, vae_err = _cov_error(result.model), _cov_error(vae)
    assert libi_err <= vae_err + 0.05, (libi_err, vae_err)
    assert libi_err < 0.5


def test_penalty_gradients_match_the_plain_formula_in_float32():
    """Regression: the overflow-capped exp once had float32 gradients that rounded to 0 below the
    cap (e³⁰ − e³⁰ + eᵗ), so the Eq. 44 penalties never acted on the codes."""
    torch.manual_seed(0)
    codes64 = (torch.randn(200, 2, dtype=torch.float64) @ torch.tensor([[1.5, 0.3], [0.0, 0.8]], dtype=torch.float64)
               + 0.4)
    grads = []
    for dtype, plain in ((torch.float32, False), (torch.float64, True)):
        c = codes64.to(dtype).requires_grad_(True)
        if plain:  # Eq. 44 written directly, no cap, in float64
            mu = c.mean(0)
            cov = (c - mu).T @ (c - mu) / c.shape[0]
            pen = (torch.exp(henze_zirkler(c)) + torch.exp((cov - torch.eye(2, dtype=dtype)).pow(2).sum() / 0.5)
                   + torch.exp(mu.pow(2).sum() / 0.5))
        else:
            pen = libi_penalty(c, 1.0, 0.5, 0.5)
        pen.backward()
        grads.append(c.grad.double())
    assert float(grads[1].abs().max()) > 1e-2
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_a_batch_of_libi_fits_computes_each_fit_alone():
    """fit_libi on three replicates (own model, seed and data version) against each LiBI.fit alone: the same
    rounds, losses, kept round and weights, to float rounding (step 1 stacks θ and h, step 2 is the engine's
    batch); and a replicate's per-round numbers are its own generative loss's (Eq. 44)."""
    from pyrovae.inference.libi import fit_libi

    settings = dict(rounds=2, step1_steps=60, step2_steps=20, lr=0.03, val_samples=20)
    datas = [libi_splits("linear-jtex", index=i, n=60, seed=3) for i in range(3)]
    batch = fit_libi([LiBI(_model(i), LiBISettings(seed=10 + i, **settings)) for i in range(3)],
                     [d["train"] for d in datas], [d["validation"] for d in datas])
    for i, (result, data) in enumerate(zip(batch, datas)):
        alone = LiBI(_model(i), LiBISettings(seed=10 + i, **settings)).fit(data["train"], data["validation"])
        assert result.best_round == alone.best_round
        for ours, theirs in zip(result.history, alone.history):
            assert ours.keys() == theirs.keys()
            for key in ours:
                assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), (i, key)
        for (name, a), b in zip(result.model.state_dict().items(), alone.model.state_dict().values()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (i, name)
    assert len({round(r.history[-1]["code_nll"], 6) for r in batch}) == 3  # three different fits


def test_a_libi_batch_shares_its_settings_and_sizes():
    from pyrovae.inference.libi import fit_libi

    d = libi_splits("linear-jtex", n=60, seed=3)
    with pytest.raises(ConfigError, match="apart from the seed"):
        fit_libi([LiBI(_model(0), LiBISettings(lr=0.01)), LiBI(_model(1), LiBISettings(lr=0.02))], [d["train"]] * 2)
    other = libi_splits("linear-jtex", n=90, seed=3)
    with pytest.raises(ConfigError, match="one size"):
        fit_libi([LiBI(_model(0)), LiBI(_model(1))], [d["train"], other["train"]])


def test_step_one_of_a_batch_is_each_fits_own_eq44_minimisation():
    """Against an independent reference: Adam on one model's own Eq. 44 loss (LiBI.generative_loss) over its
    own θ and h (LiBI.generative_parameters) gives the decoder and the code NLL that replicate r of a batched
    fit ends step 1 with; a decoder parameter the model froze stays where it was."""
    from dataclasses import replace

    from pyrovae.inference.libi import code_log_likelihood, fit_libi
    from pyrovae.models import FixedNoise, SigmaCVAE
    from pyrovae.optim import Minimiser

    def model(seed):
        torch.manual_seed(seed)
        m = SigmaCVAE(0, 2, latent_dim=2, encoder_widths=(8,), decoder_widths=(8,), noise=FixedNoise(0.1))
        m.decoder[0].bias.requires_grad_(False)
        return m

    datas = [libi_splits("linear-jtex", index=i, n=60, seed=3)["train"] for i in range(2)]
    settings = LiBISettings(rounds=1, step1_steps=40, step2_steps=5, lr=0.03, val_samples=10)
    batch = fit_libi([LiBI(model(i), replace(settings, seed=i)) for i in range(2)], datas)
    for i, (result, data) in enumerate(zip(batch, datas)):
        reference = LiBI(model(i), settings)
        frozen = reference.model.decoder[0].bias.detach().clone()
        y = data.observed
        Minimiser.adam(reference.generative_parameters(), settings.lr).run(lambda: reference.generative_loss(y),
                                                                           settings.step1_steps)
        for (name, a), b in zip(result.model.decoder.state_dict().items(), reference.model.decoder.state_dict().values()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (i, name)
        assert torch.equal(result.model.decoder[0].bias, frozen)
        with torch.no_grad():
            nll = -code_log_likelihood(reference.model, y, reference.code_net(y)[0])
        assert result.history[0]["code_nll"] == pytest.approx(float(nll), rel=1e-4)


def test_a_diverging_fit_leaves_the_batch_and_the_others_finish_as_alone():
    """The engine's NaN policy in LiBI: a replicate whose step-1 loss overflows (its data scaled by 1e20) stops
    with status nan, no round and its starting weights; the other replicates end as they end alone. Alone,
    the diverging fit raises TrainingDiverged."""
    from pyrovae.data.base import Dataset
    from pyrovae.errors import TrainingDiverged
    from pyrovae.inference.libi import fit_libi

    settings = dict(rounds=2, step1_steps=30, step2_steps=10, lr=0.03, val_samples=10)
    datas = [libi_splits("linear-jtex", index=i, n=60, seed=3) for i in range(3)]
    bad = datas[1]["train"]
    datas[1] = dict(datas[1], train=Dataset("overflow", bad.condition, bad.observed * 1e20))
    start = _model(1).state_dict()
    batch = fit_libi([LiBI(_model(i), LiBISettings(seed=10 + i, **settings)) for i in range(3)],
                     [d["train"] for d in datas], [d["validation"] for d in datas])
    assert [r.status for r in batch] == ["done", "nan", "done"]
    assert batch[1].best_round == -1 and batch[1].history == []
    assert all(torch.equal(v, start[k]) for k, v in batch[1].model.state_dict().items())
    for i in (0, 2):
        alone = LiBI(_model(i), LiBISettings(seed=10 + i, **settings)).fit(datas[i]["train"], datas[i]["validation"])
        assert batch[i].best_round == alone.best_round
        for (name, a), b in zip(batch[i].model.state_dict().items(), alone.model.state_dict().values()):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (i, name)
    with pytest.raises(TrainingDiverged, match="round 0"):
        LiBI(_model(1), LiBISettings(seed=11, **settings)).fit(datas[1]["train"], datas[1]["validation"])
