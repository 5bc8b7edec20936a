"""Several in-process σ-CVAE runs (their own data and seeds) as one batch equal the runs one by one."""

import math

import pytest

from pyrovae.data.simulations import SIMULATIONS
from pyrovae.experiments.tasks import CVAESettings, fit_cvae, fit_cvaes

SEEDS = [3, 11]


@pytest.mark.parametrize("calibration", ["paper", "robust"])
def test_a_batch_of_runs_equals_each_run_alone(calibration):
    """Replicate r starts from the weights and draws from the stream of ``fit_cvae(datas[r], seed=seeds[r])``:
    same status and steps, the same σ and KL to float rounding. (Both run to the step cap here; replicates
    that stop at different blocks are covered by the engine's identity tests, tests/inference/test_replicates.py.)"""
    settings = CVAESettings(latent_dim=2, encoder_widths=[8, 4], decoder_widths=[4, 8], max_steps=300, K=10,
                            calibration=calibration)
    datas = [SIMULATIONS["m1"](n=150, seed=seed) for seed in SEEDS]
    batch = fit_cvaes(datas, settings, SEEDS)
    for data, seed, together in zip(datas, SEEDS, batch):
        alone = fit_cvae(data, settings, seed)
        assert (together.status, together.metrics["steps"]) == (alone.status, alone.metrics["steps"])
        for key in ("sigma", "kl"):
            assert math.isclose(together.metrics[key], alone.metrics[key], rel_tol=1e-4, abs_tol=1e-6), key


def test_table3_cvae_rows_do_not_depend_on_the_other_repetitions_of_their_batch(tmp_path):
    """A repetition's row (its data, its test set, its evaluation draws) is the same whether it trains
    alone or beside another; a checkpointed batch run again resumes to the same rows."""
    from pyrovae.papers.liu_wang_2025.conditional_density import run_cvae

    tiny = dict(n_train=120, n_test=30, max_steps=40, draws=30)
    both = run_cvae("m1", "CVAE (ours), standardised", [5, 9], checkpoint_dir=str(tmp_path / "ckpt"), **tiny)
    alone = run_cvae("m1", "CVAE (ours), standardised", [9], **tiny)
    assert [r["seed"] for r in both] == [5, 9]
    for key in ("mse_mean", "mse_sd", "sigma", "kl"):
        assert math.isclose(both[1][key], alone[0][key], rel_tol=1e-4, abs_tol=1e-7), key
    assert both[0]["mse_mean"] != both[1]["mse_mean"]
    again = run_cvae("m1", "CVAE (ours), standardised", [5, 9], checkpoint_dir=str(tmp_path / "ckpt"), **tiny)
    assert [r["mse_mean"] for r in again] == pytest.approx([r["mse_mean"] for r in both], rel=1e-6)
