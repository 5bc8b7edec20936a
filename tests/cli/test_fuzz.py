"""Fuzz test (issue 13, "What to build" 7): generated config files and argument lists through the
command line. Every outcome is exit 0 (it trained), exit 2 with one ``error:`` line or click's usage
message (bad input), or exit 1 for a run that diverged — never a traceback, never exit 1 on bad input.

Values that are valid but expensive (``n`` in the millions, a 10⁵-wide layer) are left out: they
would train, not fail. Runs are tiny (``--n 20 --max-steps 2 -K 1``) and plots are skipped, so a
valid example takes milliseconds. ``derandomize`` keeps the default suite deterministic."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.config import RunConfig

TINY = ["--n", "20", "--max-steps", "2", "-K", "1", "--quiet"]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: Settings whose valid values cost memory or time in proportion: fuzzed only small, or invalid.
SIZES = {"latent_dim", "particles", "threads", "anneal_blocks", "cycles", "batch_size", "checkpoint_every"}
NAMES = {"dataset": ["two-moon", "m1", "nope", ""], "algorithm": ["joint", "vanilla", "analytic", "calibrated", "monotonic",
         "cyclical", "fixed", "lagging", "nope"], "elbo": ["trace", "meanfield", "iwae", "x"],
         "calibration": ["paper", "code", "x"], "convergence": ["block-mean", "last-step", "x"],
         "activation": ["tanh", "relu", "x"], "device": ["cpu", "cuda", "tpu", ""]}

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(max_value=0), st.integers(min_value=10**8), st.lists(st.integers(-2, 3), max_size=3),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
small = st.one_of(st.integers(1, 3), st.floats(0.0, 2.0))


def _value(key: str):
    if key in NAMES:
        return st.one_of(st.sampled_from(NAMES[key]), junk)
    if key.endswith("_widths"):
        return st.one_of(st.lists(st.integers(-1, 4), max_size=3), junk)
    return st.one_of(small, junk)


config_files = st.sets(
    st.sampled_from(sorted(set(RunConfig.__dataclass_fields__) - {"n", "max_steps", "K"}) + ["bogus"]), max_size=4,
).flatmap(lambda keys: st.fixed_dictionaries({k: _value(k) for k in sorted(keys)}))

FLAGS = {
    "--algorithm": NAMES["algorithm"], "--dataset": NAMES["dataset"], "--elbo": NAMES["elbo"],
    "--calibration": NAMES["calibration"], "--convergence": NAMES["convergence"], "--device": NAMES["device"],
    "--latent-dim": ["1", "2", "0", "-1", "99999999999999999999", "x"], "--particles": ["1", "2", "0", "1e400"],
    "--threads": ["1", "0", "99999999999999999999"], "--batch-size": ["5", "0", "2.5", "99999999999999999999"],
    "--reps": ["1", "2", "0", "-3", "99999999999999999999"], "--jobs": ["1", "0", "abc"],
    "--seed": ["0", "-1", "4294967296", "99999999999999", "x"], "--data-seed": ["1", "-1", "4294967296"],
    "-C": ["0.05", "-0.1", "nan", "inf", "abc"], "--lr": ["0.005", "0", "-1", "nan", "1e400"],
    "--tau": ["0.1", "-0.5", "inf", "true"], "--sigma0": ["1", "0", "-1", "nan"], "--tol": ["0.001", "-1", "nan"],
    "-K": ["1", "0", "99999999999999999999", "2.5"], "--out": [""],
}
argument_lists = st.lists(st.one_of(
    st.sampled_from(sorted(FLAGS)).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(FLAGS[f]))),
    st.sampled_from([("--restart",), ("--quiet",), ("--bogus",), ("--n",)]),
), max_size=4).map(lambda parts: [token for part in parts for token in part])


def _check(result) -> None:
    """Exit 0, exit 2 (bad input), or exit 1 for a diverged run; never an uncaught exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2) or (result.exit_code == 1 and "diverged" in result.output), result.output
    if result.exit_code == 2:  # pyrovae's one line, or click's usage error (an unknown option, a missing value)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert (len(lines) == 1 and lines[0].startswith("error:")) or "Error" in result.output, result.output


def _run(args, monkeypatch, work: Path):
    monkeypatch.chdir(work)
    monkeypatch.setattr("pyrovae.api.write_run_plots", lambda *a, **k: None)  # inputs, not plots, are tested here
    try:
        return CliRunner().invoke(app, ["train", *TINY, *[str(a) for a in args], "--out", str(work / "run")]
                                  if "--out" not in args else ["train", *TINY, *args])
    finally:
        torch.set_num_threads(1)  # a valid --threads in an example must not slow the rest of the suite


@FUZZ
@given(config=config_files, toml=st.booleans())
def test_generated_config_files_exit_0_or_2(config, toml, monkeypatch):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / ("cfg.toml" if toml else "cfg.json")
        if toml:  # JSON literals are TOML values for scalars and lists; anything else fails to parse (exit 2)
            path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items()))
        else:
            path.write_text(json.dumps(config))
        _check(_run(["--config", path], monkeypatch, work))


@FUZZ
@given(args=argument_lists)
def test_generated_argument_lists_exit_0_or_2(args, monkeypatch):
    with tempfile.TemporaryDirectory() as tmp:
        _check(_run(args, monkeypatch, Path(tmp)))


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=64))
def test_arbitrary_bytes_as_a_config_file_exit_0_or_2(content, monkeypatch):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "cfg.toml"
        path.write_bytes(content)
        result = _run(["--config", path], monkeypatch, work)
        _check(result)
