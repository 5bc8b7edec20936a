"""What an experiment is and accepts, and the registry the paper modules of :mod:`pyrovae.papers` fill."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyrovae.errors import ConfigError
from pyrovae.executors import Executor, make_executor
from pyrovae.registry import Registry
from pyrovae.validation import MAX_UNITS, integer_at_least, seed
from pyrovae.validation import device as device_name

__all__ = ["ExperimentOptions", "Experiment", "EXPERIMENTS", "register", "trains_on_device", "override"]


@dataclass
class ExperimentOptions:
    """What every experiment accepts. ``reps=None`` takes the experiment's own default
    (small with ``quick``, the paper's count otherwise). ``full``: the paper's whole protocol (restarts,
    grids, selection on validation), for the experiments registered with one. ``executor`` runs the
    experiment's parallel maps (default: ``jobs`` local processes, this process when 1; see
    :mod:`pyrovae.executors`). ``device`` is where the models of experiments that honour it train
    (:attr:`Experiment.devices`). With ``stored_only`` every task of the experiment's parallel maps must already
    be stored in ``out/tasks`` (none runs; a missing one raises :class:`~pyrovae.errors.ConfigError`; what the
    experiment computes outside its tasks runs again), no task is left out for a package or file missing here,
    and ``device`` only names the stored tasks, so it need not exist here. ``overrides`` (``--set key=value``)
    replace the experiment's own settings through :meth:`configure`. ``diverged`` collects, while the experiment runs, the names of
    the runs whose training diverged (their numbers are left out of every summary; the command line
    names them and exits 1); ``task_seconds`` the wall time of each task of its parallel maps, with
    whether an earlier run did it (``(seconds, reused)``); ``task_commits`` how many tasks each commit of the
    package computed (a resumed run may mix code versions: the report says so)."""

    out: Path
    quick: bool = False
    full: bool = False
    reps: int | None = None
    jobs: int = 1
    seed: int = 0
    progress: bool = False
    device: str = "cpu"
    stored_only: bool = False
    overrides: dict[str, str] = field(default_factory=dict)
    executor: Executor | None = None
    diverged: list[str] = field(default_factory=list)
    task_seconds: list[tuple[float, bool]] = field(default_factory=list)
    task_commits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.reps is not None:
            self.reps = integer_at_least("--reps", self.reps, 1, MAX_UNITS)
        self.jobs = integer_at_least("--jobs", self.jobs, 1, MAX_UNITS)
        self.seed = seed("--seed", self.seed)
        if self.quick and self.full:
            raise ConfigError("--quick and --full exclude each other")
        self.device = device_name("--device", self.device, available=not self.stored_only)
        if self.executor is None:
            self.executor = make_executor(self.jobs)

    def repetitions(self, quick: int, full: int) -> int:
        return self.reps if self.reps is not None else (quick if self.quick else full)

    def configure(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The experiment's settings: ``defaults`` with :attr:`overrides` applied, each read as the
        type of the default it replaces (:func:`override`). An unknown key or a value of the wrong
        type raises a :class:`~pyrovae.errors.ConfigError` before any work is done."""
        unknown = sorted(set(self.overrides) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} for this experiment; known: {', '.join(sorted(defaults))}")
        return {**defaults, **{k: override(k, v, defaults[k]) for k, v in self.overrides.items()}}



def override(key: str, value: str, default: Any) -> Any:
    """``--set key=value`` read as the type of ``default``: a boolean (true/false/yes/no/1/0), an
    integer, a real number, a string, or a comma-separated list (of the type of the default's
    first element; a bracketed JSON list is accepted too)."""
    raw = str(value).strip()
    if isinstance(default, bool):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if raw.lower() not in words:
            raise ConfigError(f"--set {key}={value}: expected true or false")
        return words[raw.lower()]
    if isinstance(default, (list, tuple)):
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        items = [part.strip() for part in inner.split(",") if part.strip()]
        if not items:
            raise ConfigError(f"--set {key}={value}: expected a comma-separated list")
        element = default[0] if default else ""
        parsed = [override(key, item, element) for item in items]
        return type(default)(parsed)
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={value}: expected an integer") from None
    if isinstance(default, float):
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={value}: expected a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"--set {key}={value}: expected a finite number")
        return number
    if isinstance(default, str):
        return raw
    if default is None:  # no type to follow: a JSON number, boolean or null, else the text
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    raise ConfigError(f"--set {key}: this setting cannot be set from the command line")


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    source: str  # the paper and table it reproduces
    fn: Callable[[ExperimentOptions], Any]  # the registered function; returns an ExperimentReport
    devices: bool = False  # its models train on ``options.device`` (:func:`trains_on_device`)
    full: str | None = None  # what --full runs (the paper's protocol), or None: no --full

    @property
    def code(self) -> str:
        """Where the experiment is written, as a path inside the package (``pyrovae/papers/…/two_moon.py``)."""
        return self.fn.__module__.replace(".", "/") + ".py"

    def run(self, options: ExperimentOptions):
        """Run the experiment; its report carries this record's name, title and source."""
        report = self.fn(options)
        report.name, report.title, report.source = self.name, self.title, self.source
        return report


#: filled by the paper modules as :mod:`pyrovae.papers` imports them (:func:`pyrovae.papers.experiments`)
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(name: str, title: str, source: str, full: str | None = None):
    """Decorator registering ``fn(options) -> ExperimentReport`` under ``name``; ``full`` says what the
    experiment runs with ``--full`` (the paper's protocol), for those that have one."""
    return EXPERIMENTS.register(name, lambda fn: Experiment(name, title, source, fn, full=full,
                                                            devices=getattr(fn, "trains_on_device", False)))


def trains_on_device(fn):
    """Mark (below ``@register``) an experiment whose models train on ``options.device``; the others
    train on the CPU and refuse ``--device cuda``."""
    fn.trains_on_device = True
    return fn
