"""Named experiments, one per paper table or figure: ``pyrovae experiment list | run NAME``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.validation import MAX_UNITS, integer_at_least, seed

__all__ = ["ExperimentOptions", "Experiment", "EXPERIMENTS", "register", "get_experiment"]


@dataclass
class ExperimentOptions:
    """What every experiment accepts. ``reps=None`` takes the experiment's own default
    (small with ``quick``, the paper's count otherwise). ``full``: the paper's whole protocol (restarts,
    grids, selection on validation), for the experiments registered with one. ``diverged`` collects, while the
    experiment runs, the names of the runs whose training diverged (their numbers are left out of
    every summary; the command line names them and exits 1)."""

    out: Path
    quick: bool = False
    full: bool = False
    reps: int | None = None
    jobs: int = 1
    seed: int = 0
    progress: bool = False
    diverged: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.reps is not None:
            self.reps = integer_at_least("--reps", self.reps, 1, MAX_UNITS)
        self.jobs = integer_at_least("--jobs", self.jobs, 1, MAX_UNITS)
        self.seed = seed("--seed", self.seed)
        if self.quick and self.full:
            raise ConfigError("--quick and --full exclude each other")

    def repetitions(self, quick: int, full: int) -> int:
        return self.reps if self.reps is not None else (quick if self.quick else full)


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    source: str  # the paper and table it reproduces
    run: Callable[[ExperimentOptions], "object"]  # returns an ExperimentReport
    full: str | None = None  # what --full runs (the paper's protocol), or None: no --full


EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, title: str, source: str, full: str | None = None):
    """Decorator registering ``fn(options) -> ExperimentReport`` under ``name``; ``full`` says what the
    experiment runs with ``--full`` (the paper's protocol), for those that have one."""

    def wrap(fn):
        EXPERIMENTS[name] = Experiment(name, title, source, fn, full)
        return fn

    return wrap


def get_experiment(name: str) -> Experiment:
    _load_all()
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}") from None


def _load_all() -> None:
    """Import the modules that register experiments."""
    from pyrovae.experiments import liu2025  # noqa: F401
    from pyrovae.experiments import berger2021, calibration_robustness, dai2019  # noqa: F401
    from pyrovae.experiments import liu2025_appendix_e, liu2025_cde, liu2025_figures, liu2025_mnist, liu2025_uci  # noqa: F401
    from pyrovae.experiments import yacoby2021_libi  # noqa: F401
    from pyrovae.experiments import yacoby2021_unsupervised  # noqa: F401
    from pyrovae.experiments import yacoby2021_m2, yacoby2021_m2_real, yacoby2021_m2_sweep  # noqa: F401
