"""A run that diverges says where its last good state is, and never reports the untrained model's
numbers as a result (issue 13, item 4)."""

import json

import numpy as np
from typer.testing import CliRunner

from pyrovae.api import _mark_diverged
from pyrovae.cli.main import app
from pyrovae.runs import save_checkpoint


def test_nan_in_the_first_block_claims_no_checkpoint_and_no_sigma(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "huge.csv"
    np.savetxt(path, np.column_stack([rng.normal(size=50), rng.normal(size=50) * 1e30]), delimiter=",",
               header="x1,y1", comments="")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data-file", str(path), "--algorithm", "analytic", "-K", "2",
                                      "--max-steps", "20", "--quiet", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "diverged" in lines[0], result.output
    assert "checkpoint is kept" not in result.output and not (out / "checkpoint").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "nan" and metrics["sigma"] is None and metrics["checkpoint"] is None


def test_a_diverged_run_with_a_checkpoint_names_it_and_keeps_its_last_good_numbers(tmp_path):
    save_checkpoint(tmp_path, {}, {"step": 4})
    metrics = {"sigma": 0.5, "blocks": 2, "steps": 4}
    _mark_diverged(metrics, tmp_path)
    assert metrics == {"sigma": 0.5, "blocks": 2, "steps": 4, "checkpoint": str(tmp_path / "checkpoint")}
