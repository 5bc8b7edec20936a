"""The importance-weighted polish (ours): its bound against the closed-form marginal likelihood of a
linear-Gaussian decoder, its σ at and away from the maximum-likelihood σ, its stop and NaN rules,
and its place at the end of the robust variant."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import BlockStats
from pyrovae.inference.iwae_polish import iwae_bound, iwae_polish
from pyrovae.inference.robust_calibration import RobustCalibratedSigma, RobustSettings, plateau
from pyrovae.models import FixedNoise, SigmaCVAE
from tests.inference.test_sigma_refinement import (B, SIGMA_MLE, W, converged_run, empty_x, linear_model, nonlinear_case,
                                                   whitened_data)


def log_marginal(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(y; b, W Wᵀ + σ² I) per point: the linear decoder's exact log p(y)."""
    cov = W @ W.T + sigma**2 * torch.eye(2, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(B, covariance_matrix=cov).log_prob(y)


def log_sigma(sigma: float) -> torch.Tensor:
    return torch.tensor(math.log(sigma), dtype=torch.float64)


@pytest.mark.parametrize("particles", [1, 7])
def test_with_the_exact_posterior_the_bound_is_the_log_marginal_likelihood(particles):
    """q = p(z | y; σ): every weight p(y | z) p(z) / q(z) equals p(y), so the bound is log p(y) for any
    K and any draw, to rounding."""
    y = whitened_data()
    for sigma in (0.3, SIGMA_MLE, 0.9):
        bound = iwae_bound(linear_model(sigma), empty_x(len(y)), y, log_sigma(sigma), particles,
                           torch.Generator().manual_seed(1))
        assert torch.allclose(bound, log_marginal(y, sigma), rtol=0, atol=1e-10)


def test_with_another_posterior_the_bound_rises_with_particles_toward_log_p():
    """Burda et al. (2016), Theorem 1: E L_1 ≤ E L_8 ≤ E L_64 ≤ E L_512 ≤ log p(y) and L_K → log p(y),
    for a q that is not the posterior (the exact posterior at σ = 0.3, the bound at σ* = 0.5). Measured
    gaps to log p: 0.19, 0.09, 0.022, 0.006 nats per point; standard errors of the means over
    20 repeats ≤ 0.008."""
    y = whitened_data()
    model, generator = linear_model(0.3), torch.Generator().manual_seed(2)
    with torch.no_grad():
        means = [float(torch.stack([iwae_bound(model, empty_x(len(y)), y, log_sigma(SIGMA_MLE), k, generator).mean()
                                    for _ in range(20)]).mean()) for k in (1, 8, 64, 512)]
    exact = float(log_marginal(y, SIGMA_MLE).mean())
    assert all(b > a + 0.01 for a, b in zip(means, means[1:])) and means[-1] < exact
    assert exact - means[-1] < 0.015


def plateau_stop(window: int = 3, rel_tol: float = 0.005):
    return lambda log_sigmas, losses: plateau(log_sigmas, losses, window, rel_tol)


def test_at_the_maximum_likelihood_sigma_the_polish_stays_there_and_stops_on_its_plateau():
    """The decoder is a maximum-likelihood fit (σ* = 0.5 exactly) and q its posterior: the expected
    gradient of the bound is the gradient of log p, zero, so σ moves only by the noise of Adam's steps
    on one draw per step (at most 1.2 % over 16 seeds measured with these 200 points, K = 16 and 32),
    and the plateau test ends the polish after its first window, 75 steps (100–125 in 1 of 16)."""
    y = whitened_data()
    model = linear_model(SIGMA_MLE)
    result = iwae_polish(model, empty_x(len(y)), y, particles=32, max_steps=400, block=25, lr=0.005,
                         stop=plateau_stop(), generator=torch.Generator().manual_seed(3))
    assert result.status == "stopped" and result.steps <= 125
    assert model.sigma == result.sigma == pytest.approx(SIGMA_MLE, rel=0.02)


def test_from_a_wrong_sigma_the_polish_climbs_to_the_maximum_likelihood_sigma():
    """Same decoder, σ started at 0.8: σ learned in the bound climbs to σ* = 0.5 (its encoder is the
    posterior at 0.5, a good proposal for 16 particles)."""
    y = whitened_data()
    model = linear_model(SIGMA_MLE)
    model.noise.set_sigma(0.8)
    result = iwae_polish(model, empty_x(len(y)), y, particles=16, max_steps=600, block=25, lr=0.005,
                         stop=lambda *_: False, generator=torch.Generator().manual_seed(4))
    assert result.status == "max_steps" and result.steps == 600
    assert model.sigma == pytest.approx(SIGMA_MLE, rel=0.02)


def test_the_stop_rule_sees_block_means_and_ends_the_polish():
    """``stop`` gets one mean log σ and one mean loss per output dimension per block, and the
    polish ends at the block where it says so."""
    model, data = nonlinear_case()
    seen = []

    def stop(log_sigmas, losses):
        seen.append((list(log_sigmas), list(losses)))
        return len(log_sigmas) == 2

    result = iwae_polish(model, data.condition, data.observed, particles=4, max_steps=100, block=5, lr=0.005, stop=stop,
                         generator=torch.Generator().manual_seed(5))
    assert result.status == "stopped" and result.steps == 10
    assert [len(s) for s, _ in seen] == [1, 2] and all(len(s) == len(l) for s, l in seen)
    assert seen[0][0][0] == pytest.approx(0.0, abs=0.03)  # σ started at 1: log σ near 0 in the first block
    assert model.sigma == pytest.approx(result.sigma)


def test_the_polish_stop_on_constructed_trajectories():
    """The robust variant's polish stops on :func:`plateau` over ``polish_window`` blocks: a σ that
    falls by 2.8 % per block (as at τ = 0.5 in the first blocks) is not stopped while it falls, and is
    stopped within ``polish_window`` blocks once it holds (±0.2 % noise); one still falling by 1 % per
    block, or swinging by ±5 %, is never stopped."""
    window = RobustSettings().polish_window
    stop = plateau_stop(window)
    fall = [math.log(v) for v in (0.55, 0.535, 0.52, 0.505)]
    hold = [math.log(0.505) + 0.002 * (-1) ** b for b in range(window + 2)]
    history = fall + hold
    stops = [stop(history[:b], [1.0] * b) for b in range(1, len(history) + 1)]
    assert not any(stops[:len(fall)])
    assert any(stops[len(fall):len(fall) + window])
    falling = [math.log(0.55) - 0.01 * b for b in range(8)]
    swinging = [math.log(0.55) + 0.05 * (-1) ** b for b in range(8)]
    assert not any(stop(h[:b], [1.0] * b) for h in (falling, swinging) for b in range(1, 9))


def test_a_non_finite_step_puts_the_model_back(monkeypatch):
    """A step whose loss is NaN (here the bound turned NaN from the polish's 7th step, inside its second block)
    ends the polish with status nan, the steps of its last good block, and the weights and σ of before."""
    import pyrovae.inference.iwae_polish as ip

    model, data = nonlinear_case()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        bound = iwae_bound(*args, **kwargs)
        return bound * math.nan if len(calls) >= 7 else bound

    monkeypatch.setattr(ip, "iwae_bound", poisoned)
    result = iwae_polish(model, data.condition, data.observed, particles=4, max_steps=50, block=5, lr=0.005,
                         stop=lambda *_: False, generator=torch.Generator().manual_seed(6))
    assert result.status == "nan" and result.steps == 5 and len(calls) == 10  # the second block ran to its end
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_large_data_is_subsampled_to_the_step_budget(monkeypatch):
    """A step decodes at most ``_STEP_BUDGET`` numbers: K × points × q above it takes a random subset of
    points per step (here 2^10 // (4 × 2) = 128 of 300, a different subset each step); below it, every point."""
    import pyrovae.inference.iwae_polish as ip

    model, data = nonlinear_case()
    seen = []

    def spy(model, x, y, log_sigma, particles, generator=None):
        seen.append(y)
        return iwae_bound(model, x, y, log_sigma, particles, generator)

    monkeypatch.setattr(ip, "iwae_bound", spy)
    iwae_polish(model, data.condition, data.observed, particles=4, max_steps=3, block=5, lr=0.005, stop=lambda *_: False,
                generator=torch.Generator().manual_seed(9))
    assert [len(y) for y in seen] == [300] * 3 and torch.equal(seen[0], data.observed)
    seen.clear()
    monkeypatch.setattr(ip, "_STEP_BUDGET", 2**10)
    iwae_polish(model, data.condition, data.observed, particles=4, max_steps=3, block=5, lr=0.005, stop=lambda *_: False,
                generator=torch.Generator().manual_seed(9))
    assert [len(y) for y in seen] == [128] * 3 and not torch.equal(seen[0], seen[1])
    rows = {tuple(r) for r in data.observed.tolist()}
    assert all(tuple(r) in rows for y in seen for r in y.tolist())  # subsets of the data's points


def test_bad_arguments():
    model, data = nonlinear_case()
    for bad in (dict(particles=0), dict(max_steps=0), dict(block=0), dict(lr=0.0)):
        args = dict(particles=4, max_steps=10, block=5, lr=0.005) | bad
        with pytest.raises(ConfigError):
            iwae_polish(model, data.condition, data.observed, stop=lambda *_: False, **args)
    fixed = SigmaCVAE(data.condition_dim, data.observed_dim, noise=FixedNoise(0.3))
    with pytest.raises(ConfigError, match="sets sigma"):
        iwae_polish(fixed, data.condition, data.observed, 4, 10, 5, 0.005, stop=lambda *_: False)
    for bad in (dict(polish_particles=-1), dict(polish_steps=0), dict(polish_window=2), dict(polish_particles="8"),
                dict(polish_moved=-0.1), dict(polish_max_particles=-1), dict(polish_points=-1),
                dict(polish_max_particles=16), dict(polish_points=1000.5)):
        with pytest.raises(ConfigError):
            RobustSettings(**bad)


def converged(settings: RobustSettings):
    """The robust variant driven to a converged stop (blocks of 5 steps, streams seeded 7)."""
    model, _, alg = converged_run(settings, seed=7, block=5)
    return model, alg


def test_the_robust_variant_polishes_a_converged_run_before_its_final_sigma():
    """With ``polish_particles`` the networks and σ move (here without the importance-weighted σ,
    ``refine_particles = 0``, so σ is the polish's own); without, they are as trained; a collapsed run
    is never polished."""
    plain, plain_alg = converged(RobustSettings(polish_particles=0, refine_particles=0))
    polished, alg = converged(RobustSettings(polish_particles=8, polish_steps=20, refine_particles=0,
                                             polish_max_particles=8))  # one stage
    assert plain_alg.state.polish_steps == 0 and alg.state.polish_steps == 20  # the budget (5-step blocks)
    assert plain_alg.report() == {"polish_steps": 0, "polish_status": "none", "polish_particles": 0}
    assert alg.report() == {"polish_steps": 20, "polish_status": "max_steps", "polish_particles": 8}  # in the run's metrics
    assert plain.sigma == pytest.approx(0.3, rel=1e-6)
    assert polished.sigma != pytest.approx(0.3, rel=1e-3)
    assert not torch.equal(plain.decoder[0].weight, polished.decoder[0].weight)
    model, data = nonlinear_case()
    alg = RobustCalibratedSigma(RobustSettings(budget=1, hold=0, polish_particles=8))
    alg.setup(SimpleNamespace(algorithms=[alg], data_of=lambda r: data, settings=SimpleNamespace(lr=0.005, K=5)))
    weights = model.decoder[0].weight.clone()
    decisions = [alg.after_block(model, BlockStats(b, 1.5, 1.5, 0.0, 0.55**2, False, torch.Generator().manual_seed(8)))
                 for b in range(2 * alg.settings.window)]
    assert decisions[-1].status == "collapsed"
    assert alg.report() == {"polish_steps": 0, "polish_status": "none", "polish_particles": 0}
    assert torch.equal(model.decoder[0].weight, weights)


def staged_polish(monkeypatch, moves: list[float], seen: list | None = None, statuses: list[str] | None = None,
                  **settings):
    """The robust variant's polish with :func:`iwae_polish` replaced by stages that multiply σ by
    ``moves`` in turn (ending with ``statuses``, default "stopped"); returns the draws per point each
    stage got, the algorithm and the data's points (the points each stage trained on go to ``seen``)."""
    import pyrovae.inference.robust_calibration as rc

    seen = [] if seen is None else seen
    draws = []

    def stage(model, condition, observed, particles, max_steps, block, lr, stop, generator=None):
        draws.append(particles)
        seen.append(observed)
        model.noise.set_sigma(model.sigma * moves[len(draws) - 1])
        status = statuses[len(draws) - 1] if statuses else "stopped"
        return SimpleNamespace(sigma=model.sigma, steps=10, status=status)

    monkeypatch.setattr(rc, "iwae_polish", stage)
    model, data = nonlinear_case()
    alg = RobustCalibratedSigma(RobustSettings(refine_particles=0, **settings))
    alg.setup(SimpleNamespace(algorithms=[alg], data_of=lambda r: data, settings=SimpleNamespace(lr=0.005, K=5)))
    alg.polish(model, torch.Generator().manual_seed(0))
    return draws, alg, data.observed


def test_a_polish_stage_that_moves_sigma_is_followed_by_one_with_twice_the_draws(monkeypatch):
    """τ = 0.5 moved σ by 5-10 % at K = 32 and K = 64 then brought every run within 5 %; τ = 0.1 moved it
    by ≤ 0.6 %: one stage. Stages double K while a stage moves log σ by more than ``polish_moved``,
    up to ``polish_max_particles``; the steps of all stages count."""
    assert staged_polish(monkeypatch, [0.995])[0] == [32]  # τ = 0.1: σ holds, one stage
    particles, alg, _ = staged_polish(monkeypatch, [0.95, 0.99])  # τ = 0.5: K = 32 moved σ 5 %, K = 64 1 %
    assert particles == [32, 64] and alg.report() == {"polish_steps": 20, "polish_status": "stopped", "polish_particles": 64}
    assert staged_polish(monkeypatch, [0.9, 0.9, 0.9])[0] == [32, 64]  # never beyond polish_max_particles
    assert staged_polish(monkeypatch, [0.9, 0.9, 0.9, 0.99], polish_max_particles=256)[0] == [32, 64, 128, 256]
    assert staged_polish(monkeypatch, [1 / 0.97, 0.99])[0] == [32, 64]  # a rise counts as a move too
    assert staged_polish(monkeypatch, [0.97], polish_moved=0.05)[0] == [32]
    particles, alg, _ = staged_polish(monkeypatch, [0.95, 0.9], statuses=["stopped", "nan"])  # a failed stage ends it
    assert particles == [32, 64] and alg.report()["polish_status"] == "nan"


def test_on_more_than_polish_points_the_polish_trains_on_one_fixed_subset(monkeypatch):
    """n = 5,000 polished on 1,000 points costs a third (docs/RESULTS.md): every stage sees the same
    ``polish_points`` distinct points of the data, a random subset (not the first ones); with fewer
    points than that, or ``polish_points = 0``, all of them."""
    seen = []
    _, _, data = staged_polish(monkeypatch, [0.95, 0.99], seen, polish_points=50)
    assert len(seen) == 2 and seen[0] is seen[1] and seen[0].shape == (50, data.shape[1])
    rows = {tuple(r) for r in data.tolist()}
    assert len({tuple(r) for r in seen[0].tolist()}) == 50 and all(tuple(r) in rows for r in seen[0].tolist())
    assert not torch.equal(seen[0], data[:50])
    for points in (len(data), 0):
        seen.clear()
        _, _, data = staged_polish(monkeypatch, [0.99], seen, polish_points=points)
        assert seen[0] is data  # all points: the data themselves


def test_the_polish_starts_from_the_importance_weighted_sigma_of_its_points(monkeypatch):
    """Before its first stage the polish sets σ to the importance-weighted σ of the points it trains
    on (the subset), so a stage's move is the decoder's; the final σ (:meth:`refine`) uses all points."""
    import pyrovae.inference.robust_calibration as rc

    calls, stages = [], []
    monkeypatch.setattr(rc, "importance_sigma", lambda model, condition, observed, particles, generator=None:
                        calls.append(observed) or SimpleNamespace(sigma=0.123))

    def stage(model, condition, observed, particles, max_steps, block, lr, stop, generator=None):
        stages.append((observed, model.sigma))
        return SimpleNamespace(sigma=model.sigma, steps=10, status="stopped")

    monkeypatch.setattr(rc, "iwae_polish", stage)
    model, data = nonlinear_case()
    alg = RobustCalibratedSigma(RobustSettings(polish_points=50))
    alg.setup(SimpleNamespace(algorithms=[alg], data_of=lambda r: data, settings=SimpleNamespace(lr=0.005, K=5)))
    rng = torch.Generator().manual_seed(0)
    alg.polish(model, rng)
    assert len(calls) == 1 and calls[0] is stages[0][0] and len(calls[0]) == 50
    assert stages[0][1] == pytest.approx(0.123)  # the stage starts at the subset's importance-weighted σ
    alg.refine(model, rng)
    assert calls[-1] is data.observed
