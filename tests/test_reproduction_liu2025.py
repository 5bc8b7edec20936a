"""Liu & Wang's two-moon conclusions over 5 seeds (slow: `make test-slow`, about 10 minutes on 2 cores).

Calibrated K = 25, C = 0.05, σ₀ = 1 should end near the true σ = 0.1 with a positive KL;
joint SVI (`joint`) and the uncalibrated analytic σ (the paper's "Vanilla") with K = 25 should end collapsed
(KL ≈ 0, σ far above 0.1) — Figure 1, Figure 2 and Table 6 of the paper.
"""

import pytest

from pyrovae.api import train_reps
from pyrovae.config import load_config

pytestmark = pytest.mark.slow
REPS = 5


def _runs(tmp_path, algorithm):
    # Algorithm 1 as published for the calibrated rows (docs/RESULTS.md's commands); C is its tolerance
    paper = {"calibration": "paper", "C": 0.05} if algorithm == "calibrated" else {}
    cfg = load_config(algorithm=algorithm, K=25, sigma0=1.0, max_steps=30_000, **paper)
    return train_reps(cfg, REPS, 2, tmp_path / algorithm)["runs"]


def test_calibrated_recovers_sigma_without_collapse(tmp_path):
    runs = _runs(tmp_path, "calibrated")
    good = [r for r in runs if abs(r["sigma"] - 0.1) / 0.1 <= 0.05 and r["kl"] >= 0.05]
    assert len(good) > REPS // 2, [(r["sigma"], r["kl"]) for r in runs]


@pytest.mark.parametrize("algorithm", ["joint", "analytic"])
def test_uncalibrated_collapses(tmp_path, algorithm):
    runs = _runs(tmp_path, algorithm)
    collapsed = [r for r in runs if r["kl"] < 0.05 and r["sigma"] > 0.3]
    assert len(collapsed) > REPS // 2, [(r["sigma"], r["kl"]) for r in runs]
