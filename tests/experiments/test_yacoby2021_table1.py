"""Smoke test of seed 002 Table 1 at a tiny setting (seconds)."""

import math

from pyrovae.experiments.yacoby2021_libi import TABLE1_METHODS, table1_report

TINY = dict(n=40, steps=20, K=10, lr=0.01, beta=2.0, rounds=1, eps_hz=1.0, S=20, knn_n=10, knn_repeats=3,
            alpha=1.0, val_samples=10)


def test_table1_tiny_runs_every_method():
    kinds = ("linear-jtex", "cubic-jtex")  # the other two data sets: same code path (kept out for time)
    report = table1_report(dict(TINY), kinds=kinds, methods=TABLE1_METHODS, reps=1)
    table = report.tables[0]
    assert "errors" not in report.conclusion.lower() and "Failed" not in report.conclusion
    for kind in kinds:
        for method in TABLE1_METHODS:
            cell = table.cells[(method, f"{kind} S-kNN")]
            assert math.isfinite(cell.mean), (kind, method)
            assert (method, f"{kind} Test-LL") in table.paper
    assert "LinearJTEx" in report.conclusion and "paper" in table.to_markdown()
