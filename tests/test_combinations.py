"""Settings a run's model and algorithm would ignore: refused for a new run, dropped when a stored
run is read back, reset when a remedy changes the algorithm."""

from __future__ import annotations

import json

import pytest

from pyrovae.api import load_run, train
from pyrovae.combinations import unused_settings
from pyrovae.config import RunConfig, load_config
from pyrovae.diagnosis.remedies import learn_sigma, remedy_config
from pyrovae.errors import ConfigError


@pytest.mark.parametrize("settings, words", [
    (dict(algorithm="joint", C=0.5), "algorithm 'joint' does not calibrate; -C does not apply"),
    (dict(algorithm="calibrated", C=1.96), "the robust calibration has no tolerance C"),
    (dict(algorithm="calibrated", anneal_blocks=10), "'calibrated' does not anneal β; anneal_blocks does not apply"),
    (dict(algorithm="monotonic", cycles=3), "'monotonic' has no annealing cycles; cycles does not apply"),
    (dict(model="m2", dataset="discrete-semicircle", max_steps=10), "M2 trains --epochs passes"),
])
def test_a_setting_the_run_would_ignore_is_refused(settings, words):
    with pytest.raises(ConfigError, match=words):
        RunConfig(**settings).validate()


@pytest.mark.parametrize("settings", [
    dict(algorithm="calibrated", calibration="paper", C=1.96), dict(algorithm="calibrated", calibration="code", C=1.96),
    dict(algorithm="cyclical", anneal_blocks=10, cycles=3), dict(algorithm="monotonic", anneal_blocks=10),
    dict(algorithm="analytic", calibration="paper"),  # the variant may stay set in a base of several runs
])
def test_settings_the_run_reads_are_accepted(settings):
    RunConfig(**settings).validate()


def test_the_table_of_unused_settings():
    m2_and_libi = {"gamma", "alpha", "epochs", "rounds"}
    assert set(unused_settings("cvae", "calibrated", "paper")) == {"anneal_blocks", "cycles"} | m2_and_libi
    assert set(unused_settings("cvae", "calibrated", "robust")) == {"C", "anneal_blocks", "cycles"} | m2_and_libi
    assert set(unused_settings("cvae", "cyclical", "robust")) == {"C"} | m2_and_libi
    assert {"K", "tol", "max_steps", "C", "rounds"} <= set(unused_settings("m2", "fixed", "robust"))
    assert not {"gamma", "alpha", "epochs"} & set(unused_settings("m2", "fixed", "robust"))
    assert {"K", "batch_size"} <= set(unused_settings("vae", "libi", "robust")) and "max_steps" not in unused_settings(
        "vae", "libi", "robust")


def test_a_stored_run_with_an_ignored_setting_still_reads_back(tmp_path):
    """Older versions accepted ``-C`` for joint SVI (it had no effect); such a run directory loads,
    with the setting at its default."""
    out = tmp_path / "run"
    train(load_config(algorithm="joint", n=40, max_steps=4, K=2), out=out, plots=False)
    stored = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**stored, "C": 0.5}))
    with pytest.raises(ConfigError, match="-C does not apply"):
        load_config(out / "config.json")
    _, _, cfg = load_run(out)
    assert cfg.algorithm == "joint" and cfg.C == RunConfig.C


def test_a_remedy_that_learns_sigma_drops_the_paper_calibrations_tolerance():
    cfg = RunConfig(algorithm="calibrated", calibration="paper", C=1.96).validate()
    fixed = remedy_config(cfg, learn_sigma(cfg))
    assert fixed.algorithm == "joint" and fixed.C == RunConfig.C
