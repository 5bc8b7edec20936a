"""The README's table of experiments is the registry's: every experiment, its paper and table."""

from __future__ import annotations

import re
from pathlib import Path

from pyrovae.experiments.registry import EXPERIMENTS
from pyrovae.papers import get_experiment


def test_the_readme_lists_every_experiment_with_its_paper():
    get_experiment("liu-table1")  # loads every experiment module
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \| (?:yes|—) \|$", text, flags=re.M))
    assert rows == {name: e.source for name, e in EXPERIMENTS.items()}
    assert not any(re.search(r"[Ss]eed 00\d", source) for source in rows.values())
