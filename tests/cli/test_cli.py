"""The command line: exit codes on bad input, run directories, resume, NaN handling."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pyrovae.cli.main import app

runner = CliRunner()
SMALL = ["--n", "200", "--max-steps", "50", "-K", "5", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algorithm", "nope"], "unknown algorithm"),
        (["--algorithm", "vanilla"], "was renamed 'joint' (θ, φ and σ learned jointly by SVI); Liu & Wang's (2025) 'Vanilla' "
         "(analytic σ, no calibration) is 'analytic'"),
        (["--dataset", "nope"], "unknown data set"),
        (["--elbo", "nope"], "unknown ELBO"),
        (["--calibration", "nope"], "unknown calibration"),
        (["-K", "0"], "K (inner steps)"),
        (["-C", "-0.1"], "tolerance C"),
        (["--sigma0", "0"], "sigma0"),
        (["--sigma0", "-1"], "sigma0"),
        (["--tau", "-0.5"], "tau"),
        (["--lr", "0"], "learning rate"),
        (["--elbo", "iwae", "--algorithm", "monotonic"], "IWAE"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args, message, tmp_path):
    result = invoke("train", *args, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("train", "--device", "cuda", *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "CUDA is not available" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("x1,y1\n1,nan\n2,3\n", "NaN"),
        ("x1,y1\n1,2,3\n2,3\n", "not a numeric CSV"),
        ("x1,y1\n1,abc\n2,3\n", "not a numeric CSV"),
        ("x1,y1,y2\n1,2\n2,3\n", "header names 3 columns"),
    ],
)
def test_bad_data_files_exit_2(content, message, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(content)
    result = invoke("train", "--data-file", path, *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 2 and message in result.output, result.output


def test_missing_data_and_config_files_exit_2(tmp_path):
    result = invoke("train", "--data-file", tmp_path / "none.csv", *SMALL)
    assert result.exit_code == 2 and "not found" in result.output
    result = invoke("train", "--config", tmp_path / "none.toml", *SMALL)
    assert result.exit_code == 2 and "not found" in result.output


def test_unknown_key_in_config_file_exits_2(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"K": 5, "bogus": 1}))
    result = invoke("train", "--config", path, *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "bogus" in result.output


def test_unwritable_output_directory_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = invoke("train", *SMALL, "--out", blocker / "run")
    assert result.exit_code == 2 and "not writable" in result.output


def test_train_writes_a_complete_run_directory_and_resumes(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--algorithm", "calibrated", *SMALL, "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    for name in ("config.json", "history.csv", "metrics.json", "checkpoint/state.pt", "checkpoint/state.json",
                 "plots/sigma.png", "plots/kl.png", "plots/reconstructions.png", "plots/samples.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "max_steps" and metrics["steps"] == 50 and metrics["seed"] == 3
    assert json.loads((out / "config.json").read_text())["K"] == 5
    # the same command with a larger budget continues from step 50
    result = invoke("train", "--algorithm", "calibrated", "--n", "200", "--max-steps", "75", "-K", "5", "--quiet",
                    "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["steps"] == 75
    # other settings into the same directory are refused
    result = invoke("train", "--algorithm", "joint", *SMALL, "--out", out, "--seed", "3")
    assert result.exit_code == 2 and "different settings" in result.output


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('algorithm = "analytic"\nK = 4\nn = 100\nmax_steps = 8\n')
    out = tmp_path / "run"
    result = invoke("train", "--config", path, "-K", "2", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["algorithm"] == "analytic" and cfg["K"] == 2 and cfg["n"] == 100


def test_nan_stops_cleanly_with_exit_1(tmp_path):
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(size=100), rng.normal(size=100) * 1e30])
    path = tmp_path / "huge.csv"
    np.savetxt(path, table, delimiter=",", header="x1,y1", comments="")
    result = invoke("train", "--data-file", path, "--algorithm", "analytic", "-K", "2", "--max-steps", "20",
                    "--quiet", "--out", tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "Traceback" not in result.output


def test_reps_write_a_summary(tmp_path):
    out = tmp_path / "reps"
    result = invoke("train", "--algorithm", "analytic", "--n", "100", "--max-steps", "10", "-K", "5", "--reps", "2",
                    "--jobs", "1", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reps"] == 2 and len(set(summary["seeds"])) == 2
    assert (out / "rep-00" / "metrics.json").is_file() and (out / "rep-01" / "metrics.json").is_file()
    sigmas = [r["sigma"] for r in summary["runs"]]
    assert summary["summary"]["sigma"]["mean"] == pytest.approx(np.mean(sigmas))
    assert summary["summary"]["sigma"]["sd"] == pytest.approx(np.std(sigmas, ddof=1))
    assert "± " in result.output or "±" in result.output


def test_datasets_list_and_export(tmp_path):
    result = invoke("datasets", "list")
    assert result.exit_code == 0 and "two-moon" in result.output
    out = tmp_path / "moons.csv"
    result = invoke("datasets", "export", "two-moon", "--out", out, "--n", "10", "--tau", "0")
    assert result.exit_code == 0, result.output
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert table.shape == (10, 3) and set(table[:, 0]) == {-1.0, 1.0}
    result = invoke("datasets", "export", "nope", "--out", out)
    assert result.exit_code == 2 and "unknown data set" in result.output
    result = invoke("datasets", "export", "two-moon", "--out", out, "--tau", "-1")
    assert result.exit_code == 2


def test_vectorized_reps_equal_their_single_runs(tmp_path):
    """`--reps 3` trains the seeds as one batch; rep i is the single run with seed i's seed."""
    common = ["--algorithm", "calibrated", "--n", "120", "--max-steps", "60", "-K", "5", "-C", "0.5", "--calibration", "paper", "--quiet"]
    result = invoke("train", *common, "--reps", "3", "--out", tmp_path / "batch")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "batch" / "summary.json").read_text())
    assert summary["vectorized"] and summary["diverged"] == []
    for i, seed in enumerate(summary["seeds"]):
        single = invoke("train", *common, "--seed", str(seed), "--out", tmp_path / f"single-{i}")
        assert single.exit_code == 0, single.output
        alone = json.loads((tmp_path / f"single-{i}" / "metrics.json").read_text())
        assert summary["runs"][i]["steps"] == alone["steps"]
        assert summary["runs"][i]["sigma"] == pytest.approx(alone["sigma"], rel=1e-4)


def test_diverged_reps_exit_non_zero_and_stay_out_of_the_summary(tmp_path):
    out = tmp_path / "nan"
    result = invoke("train", "--algorithm", "joint", "--n", "50", "--lr", "1e30", "-K", "2", "--max-steps", "20",
                    "--reps", "2", "--quiet", "--out", out)
    assert result.exit_code == 1 and "diverged" in result.output and "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] == [0, 1] and "sigma" not in summary["summary"]
    assert all(run["sigma"] is None for run in summary["runs"])  # no block finished: no numbers, as a single run


def test_reps_of_lagging_inference_train_as_one_batch_unless_asked_not_to(tmp_path):
    """Lagging Inference Networks batch (each replicate its own inner loops), for the σ-CVAE and for M2;
    --no-vectorize keeps the process-per-run path."""
    m2 = ["--model", "m2", "--noise", "fixed", "--dataset", "discrete-semicircle", "--epochs", "2",
          "--encoder-widths", "4", "--decoder-widths", "4"]
    cvae = ["--max-steps", "4", "-K", "2"]
    for name, flags, vectorized in (("m2", m2, True), ("cvae", cvae, True), ("cvae-processes", cvae + ["--no-vectorize"],
                                                                            False)):
        out = tmp_path / name
        result = invoke("train", "--algorithm", "lagging", "--n", "60", *flags, "--reps", "2", "--quiet", "--out", out)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["vectorized"] is vectorized and len(summary["runs"]) == 2, name
