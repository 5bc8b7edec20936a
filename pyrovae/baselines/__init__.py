"""Baselines the papers compare against (optional packages; see ``pyrovae[baselines]``)."""

from pyrovae.baselines.cde import (
    BASELINES,
    ConditionalKDE,
    FlexCodeBaseline,
    NNKCDEBaseline,
    baseline_available,
    density_moments,
    make_baseline,
    y_grid,
)

__all__ = ["BASELINES", "ConditionalKDE", "NNKCDEBaseline", "FlexCodeBaseline", "baseline_available",
           "density_moments", "make_baseline", "y_grid"]
