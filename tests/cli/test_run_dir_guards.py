"""What guards a run directory (issue 13, items 7 and 9): a resume on changed data is refused, and
so is a second writer while the first lives; a lock left by a dead process is taken over."""

import os
import subprocess
import sys

from pyrovae.runs import lock_run_dir
from tests.cli.cli_helpers import assert_one_error_line as one_error_line, invoke

SMALL = ["--algorithm", "analytic", "--max-steps", "4", "-K", "2", "--quiet"]


def test_resuming_on_changed_data_is_refused(tmp_path):
    data, out = tmp_path / "d.csv", tmp_path / "run"
    data.write_text("x1,y1\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    assert invoke("train", "--data-file", data, *SMALL, "--out", out).exit_code == 0
    data.write_text("x1,y1\n" + "".join(f"{i},{i % 5}\n" for i in range(20)))
    one_error_line(invoke("train", "--data-file", data, *SMALL, "--out", out), "other data", "--restart")
    assert invoke("train", "--data-file", data, *SMALL, "--out", out, "--restart").exit_code == 0


def test_a_second_writer_is_refused_with_the_first_ones_pid(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush(); print('held', flush=True); "
         "time.sleep(60)", str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_error_line(invoke("train", "--n", "20", *SMALL, "--out", out), f"PID {holder.pid}")
        assert not (out / "config.json").exists()  # refused before it wrote anything
    finally:
        holder.kill()
        holder.wait()
    assert invoke("train", "--n", "20", *SMALL, "--out", out).exit_code == 0  # the holder died: taken over


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999999\n")
    assert invoke("train", "--n", "20", *SMALL, "--out", out).exit_code == 0
    with lock_run_dir(out):
        assert (out / ".lock").read_text().strip() == str(os.getpid())
