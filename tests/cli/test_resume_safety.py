"""Resuming from the command line: a damaged checkpoint is refused in one line (exit 2), in
``train`` and in ``posterior``; ``--restart`` starts over (issue 13, items 1, 5-7)."""

import json

from tests.cli.cli_helpers import assert_one_error_line as one_error_line, invoke

SMALL = ["--algorithm", "analytic", "--n", "50", "--max-steps", "6", "-K", "2", "--quiet"]


def test_damaged_checkpoint_is_refused_by_train_and_posterior_and_restart_starts_over(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--out", out).exit_code == 0
    (out / "checkpoint" / "state.pt").write_bytes(b"")
    one_error_line(invoke("train", *SMALL, "--out", out), "damaged checkpoint", "--restart")
    one_error_line(invoke("posterior", out, "--points", "2", "--samples", "5"), "damaged checkpoint")
    result = invoke("train", *SMALL, "--out", out, "--restart")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and not metrics["resumed"]


def test_missing_state_json_does_not_silently_restart_from_step_zero(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--out", out).exit_code == 0
    (out / "checkpoint" / "state.json").unlink()
    before = (out / "checkpoint" / "state.pt").read_bytes()
    one_error_line(invoke("train", *["--algorithm", "analytic", "--n", "50", "--max-steps", "8", "-K", "2", "--quiet"],
                          "--out", out), "damaged checkpoint")
    assert (out / "checkpoint" / "state.pt").read_bytes() == before


def test_restart_accepts_other_settings(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SMALL, "--out", out).exit_code == 0
    assert invoke("train", *SMALL, "--lr", "0.01", "--out", out).exit_code == 2
    assert invoke("train", *SMALL, "--lr", "0.01", "--out", out, "--restart").exit_code == 0
