"""The wall time of every ``--quick`` experiment, at an older commit of the package and at this one.

Each experiment registered at both commits runs as ``python -m pyrovae experiment run NAME --quick --jobs 1``
in a fresh output folder, once with the older tree on ``PYTHONPATH`` and once with this one, the two
alternating (the older first for even-numbered experiments, this one first for odd ones) so that load from
other processes falls on both alike. Both run with one thread (``OMP_NUM_THREADS=1``), so the comparison is of
the code, not of the thread setting. Each finished pair is appended to the CSV; a rerun skips what is there,
so an interrupted run resumes.

``--quick`` is the short setting of each experiment as that commit defines it: where an experiment's quick
setting changed between the commits (more tasks, other step counts), the two times measure different work.
The column ``same rows`` says whether the two reports hold the same tables with the same number of rows each;
it catches a changed grid, not a changed step count, so read the experiment's quick settings at both commits
before comparing a row. Each time includes the interpreter's start and the imports (a few seconds), which
pulls the ratio of the shortest experiments toward 1. One run per side: on a busy machine, rerun the rows
that matter (``--only NAME`` into a new CSV).

The CSV's sidecar ``CSV.json`` names both commits; a rerun against other commits is refused. Each run's
stderr is kept beside the CSV (``CSV.logs/NAME-before.err``).

Usage::

    git worktree add /tmp/before 309f85f       # the commit before the replicate engine
    .venv/bin/python benchmarks/quick_experiments.py --before /tmp/before --csv runs/quick_times.csv
    .venv/bin/python benchmarks/quick_experiments.py --before /tmp/before --csv runs/quick_times.csv --only liu-table1

It prints one row per experiment: seconds before, seconds now, their ratio, and the sums over the experiments
both ran to completion.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FIELDS = ["experiment", "before_s", "before_rc", "after_s", "after_rc", "same_rows"]


def registered(tree: Path) -> list[str]:
    """The experiment names a source tree registers (read from its ``@register("...")`` lines)."""
    names = set()
    for path in (tree / "pyrovae").rglob("*.py"):
        names.update(re.findall(r'@register\(\s*"([a-z0-9-]+)"', path.read_text()))
    return sorted(names)


def commit(tree: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree, capture_output=True,
                           text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


def run_quick(tree: Path, name: str, out: Path, timeout: float, err: Path) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "pyrovae", "experiment", "run", name, "--quick", "--jobs", "1", "--quiet",
               "--out", str(out)]
    start = time.perf_counter()
    try:
        with err.open("w") as stderr:
            rc = subprocess.run(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=stderr,
                                timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    return time.perf_counter() - start, rc


def table_rows(out: Path) -> list[tuple[str, int]] | None:
    """Each table's name and row count in a report (``report.json``), to tell whether two runs did the same
    work; None when there is no report."""
    report = out / "report.json"
    if not report.exists():
        return None
    tables = json.loads(report.read_text()).get("tables", {})
    return sorted((name, len(records)) for name, records in tables.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a worktree of the older commit")
    parser.add_argument("--csv", type=Path, required=True, help="where the pairs are appended (resumable)")
    parser.add_argument("--only", nargs="+", help="these experiments only")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is stopped")
    args = parser.parse_args()
    names = sorted(set(registered(args.before)) & set(registered(HERE)))
    if args.only:
        names = [n for n in names if n in args.only]
    commits = {"before": commit(args.before), "after": commit(HERE)}
    sidecar = args.csv.with_name(args.csv.name + ".json")
    if sidecar.exists() and json.loads(sidecar.read_text()) != commits:
        sys.exit(f"{args.csv} holds times of other commits ({sidecar.read_text().strip()}); use a new CSV")
    if args.csv.exists() and not sidecar.exists():
        sys.exit(f"{args.csv} has no {sidecar.name}, so its commits are unknown; use a new CSV")
    logs = args.csv.with_name(args.csv.name + ".logs")
    logs.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(commits))
    done = {}
    if args.csv.exists():
        with args.csv.open() as f:
            done = {row["experiment"]: row for row in csv.DictReader(f)}
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.csv.exists()
    with args.csv.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new_file:
            writer.writeheader()
        for i, name in enumerate(names):
            if name in done:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                outs = {"before": Path(tmp) / "before", "after": Path(tmp) / "after"}
                order = [("before", args.before), ("after", HERE)]
                timed = {}
                for label, tree in order if i % 2 == 0 else order[::-1]:
                    timed[label] = run_quick(tree, name, outs[label], args.timeout, logs / f"{name}-{label}.err")
                    print(f"{name:<24} {label:<6} {timed[label][0]:8.1f} s  rc {timed[label][1]}", flush=True)
                rows = [table_rows(outs[label]) for label in ("before", "after")]
            row = {"experiment": name, "before_s": f"{timed['before'][0]:.1f}", "before_rc": timed["before"][1],
                   "after_s": f"{timed['after'][0]:.1f}", "after_rc": timed["after"][1],
                   "same_rows": "" if None in rows else str(rows[0] == rows[1])}
            writer.writerow(row)
            f.flush()
            done[name] = row
    print(f"\n{'experiment':<24} {'before s':>9} {'now s':>9} {'now/before':>10}  same rows")
    total_before = total_after = same_before = same_after = 0.0
    for name in names:
        row = done.get(name)
        if row is None:
            continue
        ok = int(row["before_rc"]) == 0 and int(row["after_rc"]) == 0
        before, after = float(row["before_s"]), float(row["after_s"])
        codes = f"rc {row['before_rc']}/{row['after_rc']}"
        ratio = f"{after / before:10.2f}" if ok else f"{codes:>10}"
        print(f"{name:<24} {before:9.1f} {after:9.1f} {ratio}  {row['same_rows']}")
        if ok:
            total_before, total_after = total_before + before, total_after + after
        if ok and row["same_rows"] == "True":
            same_before, same_after = same_before + before, same_after + after
    for label, b, a in (("both finished, summed", total_before, total_after),
                        ("same rows, summed", same_before, same_after)):
        if b:
            print(f"{label:<24} {b:9.1f} {a:9.1f} {a / b:10.2f}")


if __name__ == "__main__":
    main()
