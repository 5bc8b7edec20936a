"""LiBI (Yacoby, Pan & Doshi-Velez 2020) on the user's data from `pyrovae train --algorithm libi`:
its rounds, the kept round, a run directory that reloads and resumes, and the refused combinations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pyrovae.api import load_run, train
from pyrovae.config import load_config
from pyrovae.errors import ConfigError
from tests.cli.cli_helpers import assert_one_error_line, invoke


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """x = A z + ε in 2-D, A = [[1, 0], [0.8, 0.4]], σ_ε = 0.1: a linear-Gaussian truth."""
    gen = np.random.default_rng(0)
    z = gen.standard_normal((300, 2))
    x = z @ np.array([[1.0, 0.8], [0.0, 0.4]]) + 0.1 * gen.standard_normal((300, 2))
    path = tmp_path_factory.mktemp("libi") / "points.npy"
    np.save(path, x)
    return path


def test_libi_trains_from_the_command_line_and_keeps_its_best_round(points, tmp_path):
    out = tmp_path / "libi"
    result = invoke("train", "--model", "vae", "--algorithm", "libi", "--data-file", points, "--sigma0", "0.1",
                    "--rounds", "2", "--max-steps", "240", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    history = (out / "history.csv").read_text().splitlines()
    assert metrics["algorithm"] == "libi" and metrics["rounds"] == 2 and metrics["steps"] == 240
    assert len(history) == 3  # header + one row per round
    logliks = [float(line.split(",")[history[0].split(",").index("val_log_lik")]) for line in history[1:]]
    assert metrics["best_round"] == int(np.argmax(logliks)) and metrics["log_lik"] == pytest.approx(max(logliks))
    assert metrics["sigma"] == pytest.approx(0.1)  # the noise stays where --sigma0 put it
    model, data, cfg = load_run(out)
    assert cfg.algorithm == "libi" and math.isfinite(float(model.terms(data.condition, data.observed)["recon"].mean()))
    again = train(load_config(out / "config.json"), out=out)  # a finished run is read back, not trained again
    assert again.metrics == metrics
    from pyrovae.diagnosis import diagnose

    gap = diagnose(out, figures=False, write=False).finding("ELBO vs log-likelihood")
    assert gap.verdict == "failure" and gap.value > 10  # 240 steps: the likelihood is ahead of the inference


def test_a_finished_libi_run_is_not_passed_off_as_a_longer_one(points, tmp_path):
    """LiBI writes one checkpoint, at the end: asking its directory for more steps is refused with the
    reason (it used to return the shorter run as if it had trained for the new --max-steps)."""
    cfg = load_config(model="vae", algorithm="libi", data_file=str(points), sigma0=0.1, max_steps=4)
    first = train(cfg, out=tmp_path, plots=False)
    assert first.metrics["steps"] == 4
    with pytest.raises(ConfigError, match=r"\(max_steps\); LiBI writes its one checkpoint at the end"):
        train(cfg.replace(max_steps=8), out=tmp_path, plots=False)
    assert train(cfg, out=tmp_path, plots=False).metrics == first.metrics  # the same settings read it back
    result = invoke("train", "--model", "vae", "--algorithm", "libi", "--data-file", points, "--sigma0", "0.1",
                    "--max-steps", "8", "--quiet", "--out", tmp_path)
    assert_one_error_line(result, "cannot resume")


def test_libi_raises_the_log_likelihood_before_the_inference_catches_up(points):
    """What LiBI optimises first is the likelihood of its codes: 400 steps lift the importance-sampled
    log p(x) per point from about −89 to about −7 (measured), while the encoder, trained only in
    the second phase, still gives a poor ELBO — the gap LiBI's later rounds close."""
    cfg = load_config(model="vae", algorithm="libi", data_file=str(points), sigma0=0.1, max_steps=400)
    trained = train(cfg, out=None).metrics
    untrained = train(cfg.replace(max_steps=2), out=None).metrics
    assert trained["log_lik"] > untrained["log_lik"] + 50
    assert trained["neg_elbo"] > -trained["log_lik"]  # the ELBO bounds log p(x) from below


@pytest.mark.parametrize("args, words", [
    (["--algorithm", "libi"], ["--model vae, linear or cholesky", "cvae"]),
    (["--model", "vae", "--algorithm", "libi", "--noise", "learned"], ["fixed at --sigma0"]),
    (["--model", "vae", "--algorithm", "libi", "--elbo", "iwae"], ["--elbo trace"]),
    (["--model", "vae", "--algorithm", "libi", "--reps", "2"], ["one run at a time"]),
    (["--model", "vae", "--rounds", "3"], ["rounds count LiBI's rounds"]),
    (["--model", "vae", "--algorithm", "libi", "--batch-size", "10"], ["all the data", "--batch-size does not apply"]),
    (["--model", "vae", "--algorithm", "libi", "-K", "5"], ["-K does not apply"]),
])
def test_senseless_libi_combinations_are_one_line(points, tmp_path, args, words):
    assert_one_error_line(invoke("train", "--data-file", points, *args, "--max-steps", "10", "--quiet",
                                 "--out", tmp_path / "r"), *words)


def test_the_same_refusal_in_python(points):
    with pytest.raises(ConfigError, match="LiBI fits an unconditional VAE"):
        load_config(model="cvae", algorithm="libi")
    with pytest.raises(ConfigError, match="checkpoint_every does not apply"):
        load_config(model="vae", algorithm="libi", data_file=str(points), checkpoint_every=5)
    assert torch.get_num_threads() >= 1
