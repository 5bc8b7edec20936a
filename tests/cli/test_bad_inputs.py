"""Every bad input of issue 13 ("Why", items 5-8) is one line and exit 2 on the command line, and a
specific pyrovae exception in the API; none is a traceback or silently accepted."""

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from pyrovae.cli.main import app
from pyrovae.config import RunConfig, load_config
from pyrovae.data.files import load_csv
from pyrovae.errors import ConfigError, DataError
from pyrovae.metrics.likelihood import vae_log_likelihood
from pyrovae.models.cvae import SigmaCVAE

runner = CliRunner()
TINY = ["--n", "20", "--max-steps", "2", "-K", "1", "--quiet"]


def one_error_line(args, *words):
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(w in lines[0] for w in words), result.output


@pytest.mark.parametrize("command", [
    ["train", *TINY], ["demo", "--quiet"], ["check-separability", "discrete-semicircle"],
    ["experiment", "run", "liu-figure1", "--quick"], ["datasets", "export", "two-moon", "--n", "5"],
])
@pytest.mark.parametrize("value", ["-1", "99999999999999"])
def test_out_of_range_seeds(command, value, tmp_path):
    out = [] if command[0] == "check-separability" else ["--out", tmp_path / ("x.csv" if command[0] == "datasets" else "run")]
    one_error_line([*command, "--seed", value, *out], "seed must be an integer")


@pytest.mark.parametrize("setting, words", [
    ({"lr": "abc"}, ["learning rate", "'abc'"]), ({"C": "0.1"}, ["tolerance C", "'0.1'"]),
    ({"device": 5}, ["device"]), ({"encoder_widths": "abc"}, ["encoder_widths"]),
    ({"encoder_widths": [0]}, ["encoder_widths", "got 0"]), ({"checkpoint_every": "x"}, ["checkpoint_every"]),
    ({"data_file": 5}, ["data_file"]), ({"tau": True}, ["tau", "True"]), ({"n": 10**10}, ["10,000,000"]),
])
def test_config_values_of_the_wrong_type_or_range(setting, words, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(setting))
    one_error_line(["train", "--config", path, "--max-steps", "2", "--quiet", "--out", tmp_path / "run"], *words)
    with pytest.raises(ConfigError):
        load_config(path)


def test_unparseable_config_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"n": 1e400}')
    one_error_line(["train", "--config", big, "--quiet", "--out", tmp_path / "run"], "n (data points)", "inf")
    binary = tmp_path / "cfg.toml"
    binary.write_bytes(bytes(range(256)))
    one_error_line(["train", "--config", binary, "--quiet", "--out", tmp_path / "run"], "cannot parse as TOML")


@pytest.mark.parametrize("args, words", [
    (["--n", "10000000000"], ["10,000,000"]), (["--jobs", "0"], ["--jobs"]), (["--reps", "0"], ["--reps"]),
])
def test_impossible_flags(args, words, tmp_path):
    one_error_line(["train", *TINY, *args, "--out", tmp_path / "run"], *words)


@pytest.mark.parametrize("command", [["train", *TINY], ["demo"], ["experiment", "run", "liu-figure1", "--quick"]])
def test_an_empty_out_never_means_the_current_directory(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error_line([*command, "--out", ""], "--out must name a directory")
    assert list(tmp_path.iterdir()) == []


def test_experiment_jobs_zero(tmp_path):
    one_error_line(["experiment", "run", "liu-figure1", "--quick", "--jobs", "0", "--out", tmp_path], "--jobs")


def test_api_constructors_refuse_zero_width_layers_and_wrong_types():
    with pytest.raises(ConfigError, match="encoder_widths"):
        SigmaCVAE(1, 2, 2, [0], [4])
    with pytest.raises(ConfigError, match="tau"):
        RunConfig(tau=True).validate()
    with pytest.raises(ConfigError, match="seed"):
        RunConfig(seed=-1).validate()


def test_models_refuse_nan_inputs_and_responses_of_the_wrong_width():
    model = SigmaCVAE(1, 2)
    with pytest.raises(DataError, match="NaN"):
        model.sample(torch.tensor([[float("nan")]]))
    with pytest.raises(DataError, match="y must have 2 columns"):
        vae_log_likelihood(model, torch.zeros(3, 1), torch.zeros(3, 1), num_samples=10)
    with pytest.raises(DataError, match="y must have 2 columns"):
        model.terms(torch.zeros(3, 1), torch.zeros(3, 1))


@pytest.mark.parametrize("content, words", [("", ["is empty"]), ("x1,y1\n", ["header row but no data rows"]),
                                            ("x1,y1\n\n", ["header row but no data rows"])])
def test_empty_and_header_only_csv_files_give_one_line_and_no_numpy_warning(content, words, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=words[0]):
            load_csv(path)
    one_error_line(["train", "--data-file", path, *TINY, "--out", tmp_path / "run"], *words)
