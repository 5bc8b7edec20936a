"""The robust calibration variant (ours): its plateau test and its probe / stop rules on
constructed histories, and a run that loops under Algorithm 1 but ends ``collapsed`` here."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovae.errors import ConfigError
from pyrovae.inference.algorithms import BlockStats, CalibratedSigma
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.robust_calibration import RobustCalibratedSigma, RobustSettings, plateau
from pyrovae.models import CalibratedNoise, SigmaCVAE

W, TOL = 8, 0.005


def falling(blocks: int = 12, rate: float = 0.003) -> list[float]:
    """log σ falling by 0.3 % per block (2.1 % over a window): not yet a plateau."""
    return [math.log(0.3) - rate * b for b in range(blocks)]


def flat(blocks: int = 12) -> list[float]:
    """σ = 0.1 with ±0.5 % noise from the one-z evaluation, no trend."""
    return [math.log(0.1) + 0.005 * (-1) ** b for b in range(blocks)]


def oscillating(blocks: int = 12) -> list[float]:
    """No trend, but σ swings by ±5 % from block to block."""
    return [math.log(0.1) + 0.05 * (-1) ** b for b in range(blocks)]


def test_plateau_on_constructed_histories():
    constant_loss = [1.0] * 12
    assert not plateau(falling(), constant_loss, W, TOL)
    assert plateau(flat(), constant_loss, W, TOL)
    assert not plateau(oscillating(), constant_loss, W, TOL)
    assert not plateau(flat()[:W - 1], constant_loss[:W - 1], W, TOL)  # too short to judge
    # σ flat but the loss per output still falling (the KL still moving): not a plateau
    assert not plateau(flat(), [1.0 - 0.002 * b for b in range(12)], W, TOL)


def test_plateau_is_scale_free():
    """The same relative history at any σ, and the loss shifted by any constant, gives the same answer."""
    for history in (falling(), flat(), oscillating()):
        for scale in (1e-3, 1.0, 1e3):
            shifted = [v + math.log(scale) for v in history]
            assert plateau(shifted, [5.0 + v for v in shifted], W, TOL) == plateau(history, history, W, TOL)


def stats(block: int, sigma: float, kl: float, loss: float) -> BlockStats:
    return BlockStats(block=block, loss=loss, recon=loss - kl, kl=kl, mse=sigma**2, converged=False)


def drive(alg: RobustCalibratedSigma, model: SigmaCVAE, blocks, start: int = 0):
    """Feed ``(sigma, kl, loss)`` per block; return the decisions."""
    return [alg.after_block(model, stats(start + b, *row)) for b, row in enumerate(blocks)]


def test_a_first_plateau_is_accepted_after_two_failed_probes_the_second_deeper():
    """No probe has improved the first plateau: one failed probe (ρ σ) is followed by a second,
    deeper one (ρ² σ); the second failure in a row ends the run converged."""
    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma(RobustSettings(hold=0))
    assert drive(alg, model, [(0.1, 2.0, -1.0)] * W)[-1].event == "calibrate"  # the first plateau
    assert model.sigma == pytest.approx(0.05, rel=1e-6)
    again = drive(alg, model, [(0.1, 2.0, -1.0)] * W, start=W)  # no gain: one failure, probe again
    assert again[-1].event == "calibrate" and not again[-1].stop and alg.state.failures == 1
    assert model.sigma == pytest.approx(0.025, rel=1e-6)  # ρ² of 0.1
    done = drive(alg, model, [(0.1, 2.0, -1.0)] * W, start=2 * W)
    assert done[-1].stop and done[-1].status == "converged" and alg.state.count == 2 and alg.state.gains == 0


def test_with_first_probes_1_a_healthy_plateau_is_probed_once_then_accepted():
    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma(RobustSettings(first_probes=1))
    decisions = drive(alg, model, [(0.1, 2.0, -1.0)] * W)
    assert decisions[-1].event == "calibrate" and not decisions[-1].stop
    assert model.sigma == pytest.approx(0.05, rel=1e-6)  # shrunk by rho = 0.5
    hold = drive(alg, model, [(0.3, 2.0, 0.0)] * alg.settings.hold, start=W)
    assert all(d.event == "" for d in hold) and model.sigma == pytest.approx(0.05, rel=1e-6)  # σ held
    back = drive(alg, model, [(0.1, 2.0, -1.0)] * W, start=W + alg.settings.hold)  # the same plateau again
    assert back[-1].stop and back[-1].status == "converged" and alg.state.count == 1
    assert all(not d.stop for d in back[:-1])


def test_a_probe_that_gains_is_kept_and_probed_again():
    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma(RobustSettings(hold=0))
    drive(alg, model, [(0.55, 0.0, 1.5)] * W)  # collapsed plateau: probe
    better = drive(alg, model, [(0.1, 2.0, -1.0)] * W, start=W)  # escaped: lower loss, probe again
    assert better[-1].event == "calibrate" and alg.state.failures == 0 and alg.state.gains == 1
    assert alg.state.best == pytest.approx(-0.5)  # per output dimension
    done = drive(alg, model, [(0.1, 2.0, -1.0)] * W, start=2 * W)  # after a gain one failed probe suffices
    assert done[-1].stop and done[-1].status == "converged"


def test_a_run_that_never_escapes_collapse_stops_collapsed_within_its_budget():
    settings = RobustSettings(hold=2, budget=3)
    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma(settings)
    shrinks, decisions, b = [], [], 0
    while not (decisions and decisions[-1].stop):
        d = alg.after_block(model, stats(b, 0.55, 0.0, 1.5))
        if d.event == "calibrate":
            shrinks.append(model.sigma / 0.55)
        decisions.append(d)
        b += 1
        assert b < 100
    assert decisions[-1].status == "collapsed" and decisions[-1].event == "collapsed"
    # the first plateau, then budget failed probes, each shrinking harder (rho^k, bounded)
    assert shrinks == pytest.approx([0.5, 0.25, 0.125])
    assert alg.state.count == 3


def test_state_round_trip():
    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma(RobustSettings(hold=0))
    drive(alg, model, [(0.55, 0.0, 1.5)] * W)  # a collapsed plateau, probed
    drive(alg, model, [(0.1, 2.0, -1.0)] * (W + 2), start=W)  # escaped: a gain
    assert alg.state.gains == 1
    other = RobustCalibratedSigma(RobustSettings(hold=0))
    other.load_state_dict(alg.state_dict())
    assert other.state == alg.state
    # resumed, it accepts the next failed probe as the uninterrupted run does (one failure after a gain)
    last = drive(other, model, [(0.1, 2.0, -1.0)] * W, start=2 * W + 2)[-1]
    assert last.stop and last.status == "converged"


def test_state_before_the_first_plateau_survives_a_json_checkpoint():
    """``best`` is +inf until the first plateau; checkpoints write non-finite floats as null."""
    import json

    from pyrovae.runs import _jsonable

    model, alg = SigmaCVAE(1, 2, noise=CalibratedNoise(1.0)), RobustCalibratedSigma()
    drive(alg, model, [(0.55, 0.0, 1.5)] * 3)
    other = RobustCalibratedSigma()
    other.load_state_dict(json.loads(json.dumps(_jsonable(alg.state_dict()))))
    assert other.state == alg.state and other.state.best == math.inf
    assert drive(other, model, [(0.55, 0.0, 1.5)] * (W - 3))[-1].event == "calibrate"  # its first plateau


@pytest.mark.parametrize("bad", [dict(window=2), dict(shrink=1.0), dict(shrink=0.0), dict(hold=-1),
                                 dict(rel_tol=math.nan), dict(budget=0), dict(first_probes=0)])
def test_bad_settings(bad):
    with pytest.raises(ConfigError):
        RobustSettings(**bad)


def test_make_algorithm_builds_the_robust_variant():
    alg = make_algorithm("calibrated", variant="robust")
    assert isinstance(alg, RobustCalibratedSigma) and alg.name == "calibrated"


def test_the_looping_history_of_issue_19_loops_under_algorithm_1_and_ends_collapsed_under_robust():
    """The reported τ = 0.05 seed: every block converges with KL = 0 and σ snaps back to 0.547
    after each calibration. Algorithm 1 (KL < C at convergence) calibrates at every block with
    an ever larger S and never stops; the robust variant stops, collapsed, within its budget."""
    looping = BlockStats(block=0, loss=1.2, recon=1.2, kl=0.0, mse=0.547**2, converged=True,
                         rng=torch.Generator().manual_seed(0))
    paper, model = CalibratedSigma(0.05, "paper"), SigmaCVAE(1, 2, noise=CalibratedNoise(1.0))
    decisions = [paper.after_block(model, looping) for _ in range(500)]
    assert not any(d.stop for d in decisions) and paper.rule.count == 500 and paper.rule.variance == 501
    robust, model = RobustCalibratedSigma(), SigmaCVAE(1, 2, noise=CalibratedNoise(1.0))
    settings = robust.settings
    blocks = 0
    while True:
        d = robust.after_block(model, looping)
        blocks += 1
        if d.stop:
            break
    assert d.status == "collapsed" and robust.state.count == settings.budget
    assert blocks == (settings.budget + 1) * settings.window + settings.budget * settings.hold


def test_config_and_cli_names():
    from pyrovae.api import build_algorithm
    from pyrovae.config import load_config
    from pyrovae.errors import UnknownNameError

    assert isinstance(build_algorithm(load_config(calibration="robust")), RobustCalibratedSigma)
    assert isinstance(build_algorithm(load_config(calibration="paper")), CalibratedSigma)
    with pytest.raises(UnknownNameError, match="paper, code, robust"):
        load_config(calibration="blog")
