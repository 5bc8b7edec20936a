r"""σ-calibration (Liu & Wang 2025, Sec. 4.3, Eq. 14-15, Algorithm 1) and the per-block σ rules."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.inference.algorithms import (
    AnalyticSigma,
    AnnealedSigma,
    BlockStats,
    CalibratedSigma,
    FixedSigma,
    JointSVI,
)
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.calibration import CalibrationRule
from pyrovae.inference.schedules import BetaSchedule
from pyrovae.models import CalibratedNoise, FixedNoise, LearnedNoise, SigmaCVAE


def model_with(noise) -> SigmaCVAE:
    return SigmaCVAE(1, 2, noise=noise)


def stats(block=3, kl=0.01, mse=0.04, converged=True, loss=1.0, recon=1.0) -> BlockStats:
    return BlockStats(block=block, loss=loss, recon=recon, kl=kl, mse=mse, converged=converged)


# -- CalibrationRule -------------------------------------------------------------------
def test_should_calibrate_iff_kl_below_C():
    rule = CalibrationRule(tolerance=0.05)
    history = [0.0, 0.01, 0.0499, 0.05, 0.0501, 2.0]
    assert [rule.should_calibrate(kl) for kl in history] == [True, True, True, False, False, False]
    assert not CalibrationRule(tolerance=0.0).should_calibrate(0.0)


def test_paper_variant_phi_has_growing_variance():
    """phi_k ~ N(0, S_k) with S_k = k: phi_k = sqrt(k) * eps_k, sigma <- |1 + phi| sigma."""
    rule = CalibrationRule(tolerance=0.05, variant="paper")
    g, ref = torch.Generator().manual_seed(42), torch.Generator().manual_seed(42)
    sigma = 0.6
    for k in range(1, 6):
        assert rule.variance == k
        eps = float(torch.randn((), generator=ref, dtype=torch.float64))
        new_sigma, phi = rule.calibrate(sigma, generator=g)
        assert phi == pytest.approx(math.sqrt(k) * eps, rel=1e-12)
        assert new_sigma == pytest.approx(abs(1 + phi) * sigma, rel=1e-12)
        assert rule.count == k
        sigma = new_sigma
    assert rule.variance == 6


def test_code_variant_phi_is_half_standard_normal_and_S_fixed():
    rule = CalibrationRule(tolerance=0.05, variant="code")
    g, ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for k in range(1, 5):
        eps = float(torch.randn((), generator=ref, dtype=torch.float64))
        new_sigma, phi = rule.calibrate(2.0, generator=g)
        assert phi == pytest.approx(0.5 * eps, rel=1e-12)
        assert new_sigma == pytest.approx(abs(1 + phi) * 2.0, rel=1e-12)
        assert rule.variance == 1.0 and rule.count == k


def test_paper_phi_distribution():
    """Empirically: after k calibrations the next phi has variance k + 1."""
    g = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(4000):
        rule = CalibrationRule(variant="paper", variance=3.0)
        draws.append(rule.draw_phi(g))
    t = torch.tensor(draws, dtype=torch.float64)
    assert t.var().item() == pytest.approx(3.0, rel=0.08)
    assert abs(t.mean().item()) < 0.1


def test_rule_state_round_trip():
    rule = CalibrationRule()
    rule.calibrate(1.0, torch.Generator().manual_seed(0))
    rule.calibrate(1.0, torch.Generator().manual_seed(1))
    other = CalibrationRule()
    other.load_state_dict(rule.state_dict())
    assert (other.variance, other.count) == (3.0, 2)


@pytest.mark.parametrize("C", [-0.01, float("nan"), float("inf")])
def test_bad_tolerance(C):
    with pytest.raises(ConfigError):
        CalibrationRule(tolerance=C)
    with pytest.raises(ConfigError):
        CalibratedSigma(tolerance=C)


def test_unknown_variant():
    with pytest.raises(ConfigError):
        CalibrationRule(variant="blog")
    with pytest.raises(ConfigError):
        make_algorithm("calibrated", variant="blog")


# -- CalibratedSigma (Algorithm 1) on scripted block statistics ---------------------
def test_calibrated_not_converged_only_sets_analytic_sigma():
    model, alg = model_with(CalibratedNoise(1.0)), CalibratedSigma(0.05)
    d = alg.after_block(model, stats(kl=0.0, mse=0.09, converged=False))
    assert not d.stop and d.event == "" and math.isnan(d.phi)
    assert model.sigma == pytest.approx(0.3, rel=1e-6)
    assert alg.rule.count == 0


def test_calibrated_converged_and_collapsed_calibrates():
    model, alg = model_with(CalibratedNoise(1.0)), CalibratedSigma(0.05, "paper")
    torch.manual_seed(3)
    eps = float(torch.randn((), dtype=torch.float64))
    torch.manual_seed(3)
    d = alg.after_block(model, stats(kl=0.01, mse=0.25, converged=True))
    assert not d.stop and d.event == "calibrate"
    assert d.phi == pytest.approx(eps, rel=1e-12)  # S = 1 at the first calibration
    assert model.sigma == pytest.approx(abs(1 + d.phi) * 0.5, rel=1e-6)
    # the second calibration draws with S = 2
    torch.manual_seed(4)
    eps2 = float(torch.randn((), dtype=torch.float64))
    torch.manual_seed(4)
    d2 = alg.after_block(model, stats(block=9, kl=0.02, mse=0.16, converged=True))
    assert d2.event == "calibrate" and d2.phi == pytest.approx(math.sqrt(2) * eps2, rel=1e-12)
    assert model.sigma == pytest.approx(abs(1 + d2.phi) * 0.4, rel=1e-6)
    assert alg.state_dict() == {"variance": 3.0, "count": 2}


def test_calibrated_converged_with_enough_kl_stops():
    model, alg = model_with(CalibratedNoise(1.0)), CalibratedSigma(0.05)
    d = alg.after_block(model, stats(kl=0.05, mse=0.01, converged=True))
    assert d.stop and d.event == "converged"
    assert model.sigma == pytest.approx(0.1, rel=1e-6)
    assert alg.rule.count == 0


def test_scripted_run_of_algorithm_1():
    """A whole scripted history: calibrate while KL < C at convergence, stop once KL >= C."""
    model, alg = model_with(CalibratedNoise(1.0)), CalibratedSigma(0.05, "code")
    script = [  # (kl, mse, converged) -> expected event
        (0.00, 0.30, False, ""),
        (0.00, 0.29, True, "calibrate"),
        (0.30, 0.05, False, ""),
        (0.01, 0.04, True, "calibrate"),
        (1.90, 0.01, True, "converged"),
    ]
    torch.manual_seed(0)
    events = []
    for b, (kl, mse, conv, expected) in enumerate(script):
        d = alg.after_block(model, stats(block=b, kl=kl, mse=mse, converged=conv))
        events.append(d.event)
        if expected == "calibrate":
            assert model.sigma == pytest.approx(abs(1 + d.phi) * math.sqrt(mse), rel=1e-6)
        else:
            assert model.sigma == pytest.approx(math.sqrt(mse), rel=1e-6)
        assert d.stop == (expected == "converged")
    assert events == [s[3] for s in script]


# -- AnalyticSigma, AnnealedSigma, others ---------------------------------------------
@pytest.mark.parametrize("mse", [1e-4, 0.0123, 2.5])
def test_analytic_sigma_squared_is_the_mse(mse):
    model, alg = model_with(CalibratedNoise(1.0)), AnalyticSigma()
    d = alg.after_block(model, stats(mse=mse, converged=False))
    assert model.sigma**2 == pytest.approx(mse, rel=1e-6) and not d.stop
    d = alg.after_block(model, stats(mse=mse, converged=True, kl=0.0))
    assert d.stop and d.event == "converged"  # no calibration, even with KL = 0


def test_annealed_cannot_stop_before_schedule_ends():
    schedule = BetaSchedule(n_iter=20, n_cycle=2)
    model, alg = model_with(CalibratedNoise(1.0)), AnnealedSigma(schedule, "cyclical")
    for b in range(25):
        assert alg.beta(b) == schedule(b)
        d = alg.after_block(model, stats(block=b, mse=0.04, converged=True))
        assert d.stop == (b >= 20), b
        assert model.sigma == pytest.approx(0.2, rel=1e-6)


def test_joint_and_fixed_stop_at_convergence():
    for alg, noise in ((JointSVI(), LearnedNoise(1.0)), (FixedSigma(), FixedNoise(1.0))):
        model = model_with(noise)
        assert not alg.after_block(model, stats(converged=False)).stop
        assert alg.after_block(model, stats(converged=True)).stop
        assert model.sigma == pytest.approx(1.0)  # never touched
        assert alg.beta(0) == 1.0


def test_make_algorithm_and_noise_checks():
    expected = {"joint": "learned", "analytic": "calibrated", "calibrated": "calibrated",
                "monotonic": "calibrated", "cyclical": "calibrated", "fixed": "fixed"}
    noises = {"learned": LearnedNoise(1.0), "calibrated": CalibratedNoise(1.0), "fixed": FixedNoise(1.0)}
    for name, kind in expected.items():
        alg = make_algorithm(name)
        assert alg.name == name
        alg.check_model(model_with(noises[kind]))
        wrong = "learned" if kind == "fixed" else "fixed"
        with pytest.raises(ConfigError):
            alg.check_model(model_with(noises[wrong]))
    assert make_algorithm("monotonic", anneal_blocks=30).beta(14) == pytest.approx(28 / 30)
    assert make_algorithm("monotonic", anneal_blocks=30).beta(15) == pytest.approx(1.0)
    assert make_algorithm("cyclical", anneal_blocks=50, cycles=5).beta(12) == pytest.approx(0.4)
    with pytest.raises(UnknownNameError):
        make_algorithm("lagging-ish")
