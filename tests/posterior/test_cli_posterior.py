"""The `posterior` command on a real (tiny) run directory, through a local typer app.

The lead registers the command in ``pyrovae/cli/main.py``; this test wires it itself."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from pyrovae.api import train
from pyrovae.cli.posterior import posterior_command
from pyrovae.config import load_config

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
app.command("posterior")(posterior_command)


@app.callback()
def _group() -> None:
    """A group, so that the command is invoked by name as under ``pyrovae``."""


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["posterior", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(load_config(n=60, max_steps=5, K=5, algorithm="joint"), out=out, plots=False)
    return out


def test_grid_posterior_of_a_run(run_dir):
    result = invoke(run_dir, "--method", "grid", "--points", "0,2", "--samples", "50")
    assert result.exit_code == 0, result.output
    out = run_dir / "posterior-grid"
    assert {"samples.nc", "diagnostics.csv", "diagnostics.json", "plots"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "diagnostics.json").read_text())["summary"]["points"] == [0, 2]


def test_hmc_posterior_of_a_run_writes_a_complete_file_and_the_plots(run_dir):
    import arviz as az

    result = invoke(run_dir, "--method", "hmc", "--points", "3", "--samples", "30", "--warmup", "20", "--out", run_dir / "hmc")
    assert result.exit_code == 0, result.output
    out = run_dir / "hmc"
    assert {p.name for p in (out / "plots").iterdir()} == {"q_vs_posterior.png", "trace.png", "rank.png"}
    assert "trace.png" in result.output
    idata = az.from_netcdf(out / "samples.nc")
    assert {"posterior", "log_likelihood", "posterior_predictive", "observed_data", "constant_data", "sample_stats"} <= set(idata.groups())
    assert idata.sample_stats["energy"].dims == ("chain", "draw")
    assert idata.constant_data["x"].dims == ("point", "x_dim")  # two-moon conditions on x
    assert idata.posterior["point"].values.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "exact"], "not linear"),
        (["--method", "vi"], "unknown method"),
        (["--points", "0,999"], "out of range"),
        (["--points", "a,b"], "points must be"),
    ],
)
def test_bad_requests_exit_2(run_dir, args, message):
    result = invoke(run_dir, *args, "--samples", "20")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_run_dir_exits_2(tmp_path):
    result = invoke(tmp_path / "nope")
    assert result.exit_code == 2 and "not found" in result.output
