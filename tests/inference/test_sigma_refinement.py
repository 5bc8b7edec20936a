"""The importance-weighted σ (ours): on a linear-Gaussian decoder, whose posterior and
maximum-likelihood σ are known in closed form, and its EM property on a nonlinear network."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from pyrovae.data.conditional import two_moon
from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import BlockStats
from pyrovae.inference.robust_calibration import RobustCalibratedSigma, RobustSettings
from pyrovae.inference.sigma_refinement import ImportanceDraws, importance_sigma
from pyrovae.models import CalibratedNoise, SigmaCVAE
from pyrovae.models.linear import LinearEncoder

W = torch.tensor([[1.2], [-0.7]], dtype=torch.float64)  # y = W z + b + ε, z ~ N(0, 1), ε ~ N(0, σ² I_2)
B = torch.tensor([0.3, -0.4], dtype=torch.float64)
SIGMA_MLE = 0.5


def whitened_data(n: int = 200, seed: int = 0) -> torch.Tensor:
    """Points whose second moment about b is exactly W Wᵀ + σ*² I: the Gaussian log-likelihood
    -½ Σ_i [log det Σ + (y_i - b)ᵀ Σ⁻¹ (y_i - b)] is then maximised at Σ = W Wᵀ + σ*² I, so the
    maximum-likelihood σ of this decoder is σ* = ``SIGMA_MLE`` exactly."""
    raw = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    moment = raw.T @ raw / n
    target = W @ W.T + SIGMA_MLE**2 * torch.eye(2, dtype=torch.float64)
    white = raw @ torch.linalg.inv(torch.linalg.cholesky(moment)).T
    return B + white @ torch.linalg.cholesky(target).T


def linear_model(sigma_posterior: float) -> SigmaCVAE:
    """The decoder W z + b with an encoder equal to its exact posterior at ``sigma_posterior``:
    precision Λ = 1 + ‖W‖²/σ², mean Λ⁻¹ Wᵀ(y − b)/σ², variance Λ⁻¹ (one latent: mean-field is exact)."""
    model = SigmaCVAE(0, 2, 1, noise=CalibratedNoise(sigma_posterior)).double()
    model.decoder = nn.Linear(1, 2).double()
    model.encoder = LinearEncoder(2, 1).double()
    s2 = sigma_posterior**2
    precision = 1.0 + float(W.pow(2).sum()) / s2
    with torch.no_grad():
        model.decoder.weight.copy_(W)
        model.decoder.bias.copy_(B)
        model.encoder.loc.weight.copy_(W.T / (s2 * precision))
        model.encoder.loc.bias.copy_(-(W.T @ B) / (s2 * precision))
        model.encoder.log_var.weight.zero_()
        model.encoder.log_var.bias.fill_(-math.log(precision))
    return model


def empty_x(n: int) -> torch.Tensor:
    return torch.zeros(n, 0, dtype=torch.float64)


def test_with_the_exact_posterior_the_weights_are_uniform_and_the_step_is_eq10():
    """q = p(z | y; σ): p(y | z) p(z) / q(z) = p(y) for every draw, so every w_ik = 1/K and the EM
    step at σ is Liu & Wang's Eq. 10 with those draws, to rounding."""
    y = whitened_data()
    for sigma in (0.3, SIGMA_MLE, 0.9):
        draws = ImportanceDraws.draw(linear_model(sigma), empty_x(len(y)), y, 64, torch.Generator().manual_seed(1))
        assert torch.allclose(draws.weights(sigma), torch.full((64, len(y)), 1 / 64, dtype=torch.float64),
                              rtol=0, atol=1e-12)
        assert draws.em_step(sigma) == pytest.approx(draws.eq10(), rel=1e-12)
        assert draws.effective_sample_size(sigma) == pytest.approx(64, rel=1e-10)
        # the same q weighs draws unevenly at any other σ
        assert draws.effective_sample_size(1.5 * sigma) < 60


def test_eq10_with_the_exact_posterior_at_the_mle_returns_the_mle():
    """The maximum-likelihood σ is a fixed point of EM: Eq. 10 with the exact posterior at σ* gives σ*
    (up to the Monte-Carlo error of 4096 draws per point)."""
    y = whitened_data()
    draws = ImportanceDraws.draw(linear_model(SIGMA_MLE), empty_x(len(y)), y, 4096, torch.Generator().manual_seed(2))
    assert draws.eq10() == pytest.approx(SIGMA_MLE, rel=2e-3)


@pytest.mark.parametrize("sigma_q", [0.4, 0.9])
def test_the_refinement_reaches_the_maximum_likelihood_sigma_from_a_wrong_posterior(sigma_q):
    """q is the exact posterior at a wrong σ (0.3 or 0.9): Eq. 10 with q is off by more than 10 %, the
    importance-weighted fixed point lands on the closed-form MLE σ* = 0.5."""
    y = whitened_data()
    result = importance_sigma(linear_model(sigma_q), empty_x(len(y)), y, particles=4096,
                              generator=torch.Generator().manual_seed(3))
    assert abs(result.sigma_q / SIGMA_MLE - 1) > 0.05
    assert result.sigma == pytest.approx(SIGMA_MLE, rel=3e-3)
    assert 1 < result.iterations < 200 and 1 < result.ess < 4096


def nonlinear_case():
    data = two_moon(n=300, tau=0.3, seed=0)
    torch.manual_seed(0)
    return SigmaCVAE(data.condition_dim, data.observed_dim, noise=CalibratedNoise(1.0)), data


def test_the_fixed_point_maximises_the_importance_sampled_likelihood_and_em_climbs():
    """For any decoder and encoder (here an untrained App. F network), the fixed point is the σ that
    maximises the importance-sampled log-likelihood of the same draws, and every EM step raises it."""
    model, data = nonlinear_case()
    result = importance_sigma(model, data.condition, data.observed, particles=128, rtol=1e-10, max_iter=2000,
                              generator=torch.Generator().manual_seed(4))
    draws = ImportanceDraws.draw(model, data.condition, data.observed, 128, torch.Generator().manual_seed(4))
    best = minimize_scalar(lambda s: -draws.log_likelihood(s), bounds=(0.01, 10.0), method="bounded",
                           options={"xatol": 1e-9})
    assert result.sigma == pytest.approx(best.x, rel=1e-4)
    assert result.sigma_q == pytest.approx(draws.eq10(), rel=1e-12)
    sigma, values = 5.0, []
    for _ in range(20):
        values.append(draws.log_likelihood(sigma))
        sigma = draws.em_step(sigma)
    assert all(b >= a - 1e-9 for a, b in zip(values, values[1:])) and values[-1] > values[0]


def test_bad_arguments():
    model, data = nonlinear_case()
    with pytest.raises(ConfigError):
        importance_sigma(model, data.condition, data.observed, particles=0)
    with pytest.raises(ConfigError):
        importance_sigma(model, data.condition, data.observed, rtol=0.0)
    with pytest.raises(ConfigError):
        RobustSettings(refine_particles=-1)


def converged_run(settings: RobustSettings, seed: int = 5, block: int = 25):
    """Drive the robust variant, with its data, learning rate and block length from ``setup``, through
    a healthy plateau, then its probes (``first_probes`` of them) each followed by the same plateau
    again: it stops ``converged``. Every block hands it the stream seeded ``seed``. Returns the
    model, the data and the variant."""
    model, data = nonlinear_case()
    alg = RobustCalibratedSigma(settings)
    alg.setup(SimpleNamespace(algorithms=[alg], data_of=lambda r: data, settings=SimpleNamespace(lr=0.005, K=block)))
    probe = [(0.3, 2.0, 0.0)] * settings.hold + [(0.3, 2.0, -1.0)] * settings.window
    rows = [(0.3, 2.0, -1.0)] * settings.window + probe * settings.first_probes
    for b, (sigma, kl, loss) in enumerate(rows):
        decision = alg.after_block(model, BlockStats(b, loss, loss - kl, kl, sigma**2, False,
                                                     torch.Generator().manual_seed(seed)))
    assert decision.stop and decision.status == "converged"
    return model, data, alg


def test_the_robust_variant_ends_at_the_importance_weighted_sigma():
    model, data, _ = converged_run(RobustSettings(polish_particles=0))  # the refinement alone (the polish: test_iwae_polish)
    expected = importance_sigma(model, data.condition, data.observed, particles=256, generator=torch.Generator().manual_seed(5))
    assert model.sigma == pytest.approx(expected.sigma, rel=1e-6)
    assert abs(expected.sigma / 0.3 - 1) > 1e-3  # not the Eq. 10 value it was handed
    model, _, _ = converged_run(RobustSettings(refine_particles=0, polish_particles=0))
    assert model.sigma == pytest.approx(0.3, rel=1e-6)  # refinement off: Eq. 10's σ, as before


def test_decoding_in_chunks_changes_nothing(monkeypatch):
    """Large data are decoded a chunk of points at a time: the same draws give the same terms."""
    import pyrovae.inference.sigma_refinement as sr

    model, data = nonlinear_case()
    whole = ImportanceDraws.draw(model, data.condition, data.observed, 32, torch.Generator().manual_seed(6))
    monkeypatch.setattr(sr, "_DECODE_BUDGET", 32 * 2 * 7)  # 7 points per chunk: 43 chunks, the last one short
    chunked = ImportanceDraws.draw(model, data.condition, data.observed, 32, torch.Generator().manual_seed(6))
    assert chunked.sq_err.shape == (32, 300)
    assert torch.allclose(chunked.sq_err, whole.sq_err, rtol=1e-6, atol=0)
    assert torch.equal(chunked.log_ratio, whole.log_ratio)


def test_a_robust_run_stopped_by_the_step_cap_also_ends_at_the_importance_weighted_sigma():
    """The trainer calls ``at_step_cap`` before the final metrics; only the robust variant refines there."""
    from pyrovae.data.conditional import two_moon
    from pyrovae.inference.trainer import Trainer, TrainSettings
    from pyrovae.models.noise import CalibratedNoise

    data = two_moon(n=200, tau=0.3, seed=0)
    results = {}
    for particles in (0, 256):
        torch.manual_seed(0)
        model = SigmaCVAE(1, 2, 2, [8], [8], noise=CalibratedNoise(1.0))
        alg = RobustCalibratedSigma(RobustSettings(refine_particles=particles, polish_particles=0))
        results[particles] = Trainer(model, data, alg, TrainSettings(K=5, max_steps=60), seeds=[1]).run()
    plain, refined = results[0], results[256]
    assert plain.status == refined.status == "max_steps"
    assert plain.history["sigma"].tolist() == refined.history["sigma"].tolist()  # training itself is unchanged
    assert plain.model.sigma == pytest.approx(plain.history["sigma"].iloc[-1])  # Eq. 10's σ of the last block
    assert refined.metrics["sigma"] == pytest.approx(refined.model.sigma)
    again = importance_sigma(refined.model, data.condition, data.observed, particles=1024, generator=torch.Generator().manual_seed(9))
    assert refined.model.sigma == pytest.approx(again.sigma, rel=0.02)  # the fixed point, whatever the draws
    assert abs(refined.model.sigma / plain.model.sigma - 1) > 1e-3  # moved off Eq. 10 (by 1.6 % here)


def test_a_run_stopped_by_the_step_cap_is_not_polished():
    """The cap is the user's budget: with the polish on, the capped run trains exactly as without it and
    only its σ is refined (the polish would keep training a model that has not converged)."""
    from pyrovae.data.conditional import two_moon
    from pyrovae.inference.trainer import Trainer, TrainSettings
    from pyrovae.models.noise import CalibratedNoise

    data = two_moon(n=200, tau=0.3, seed=0)
    runs = {}
    for particles in (0, 32):
        torch.manual_seed(0)
        model = SigmaCVAE(1, 2, 2, [8], [8], noise=CalibratedNoise(1.0))
        alg = RobustCalibratedSigma(RobustSettings(polish_particles=particles))
        runs[particles] = (Trainer(model, data, alg, TrainSettings(K=5, max_steps=60), seeds=[1]).run(), alg)
    (off, _), (on, alg) = runs[0], runs[32]
    assert on.status == "max_steps" and (on.metrics["polish_steps"], on.metrics["polish_status"]) == (0, "none")
    assert on.model.sigma == pytest.approx(off.model.sigma, rel=1e-6)
    for a, b in zip(on.model.parameters(), off.model.parameters()):
        assert torch.equal(a, b)
