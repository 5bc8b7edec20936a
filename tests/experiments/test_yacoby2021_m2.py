"""SMOKE: the yacoby-m2 experiment runs end to end with --quick (seconds)."""

from __future__ import annotations

import math

from pyrovae.experiments.registry import ExperimentOptions, get_experiment


def test_yacoby_m2_quick_smoke(tmp_path):
    report = get_experiment("yacoby-m2").run(ExperimentOptions(out=tmp_path, quick=True))
    (table,) = report.tables
    assert len(table.rows) == 4
    for row in table.rows:
        assert math.isfinite(table.cells[(row, "S-kNN p(x)")].mean)
        assert table.cells[(row, "collapse score")].mean >= 0
    assert "paper" in table.to_markdown()
    report.write(tmp_path)
    assert (tmp_path / "report.md").exists()
