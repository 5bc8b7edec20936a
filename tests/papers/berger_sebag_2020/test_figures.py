"""Berger & Sebag (2020) Fig. 2 and the collapse diagram are written as PNG files; bad dimensions are refused."""

import pytest

from pyrovae.errors import ConfigError
from pyrovae.papers.berger_sebag_2020 import figures as hs


def test_figures_are_written(tmp_path):
    p1 = hs.plot_likelihood_heatmap(tmp_path / "fig2.png", D=2, n=61)
    p2 = hs.plot_collapse_diagram(tmp_path / "sub" / "phase.png", dims=range(2, 12), n_ratio=40, n_r=60)
    for p in (p1, p2):
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_dimension_below_two_is_refused(tmp_path):
    with pytest.raises(ConfigError):
        hs.plot_collapse_diagram(tmp_path / "x.png", dims=[1, 2])
    with pytest.raises(ConfigError):
        hs.plot_likelihood_heatmap(tmp_path / "x.png", D=1)
