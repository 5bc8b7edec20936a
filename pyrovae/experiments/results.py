"""Experiment reports: tables of our mean ± sd beside the paper's numbers, written as CSV and Markdown."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from pyrovae.runs import write_json, write_text

__all__ = ["Summary", "summarize_values", "ResultTable", "ExperimentReport"]


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float
    n: int

    def format(self, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "NA"
        return f"{_num(self.mean, digits)} ± {_num(self.sd, 2)}" if self.n > 1 else _num(self.mean, digits)


def _num(x: float, digits: int) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


def summarize_values(values: Sequence[float]) -> Summary:
    """Mean and sample SD of the finite values (``NA`` when there are none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return Summary(math.nan, math.nan, 0)
    return Summary(statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0, len(finite))


@dataclass
class ResultTable:
    """Rows × columns of summaries, each with the paper's value beside it when known.

    ``cells[(row, column)]`` is a :class:`Summary` (or a string such as ``"NA"``);
    ``paper[(row, column)]`` the published number or string.
    """

    name: str
    title: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Any] = field(default_factory=dict)
    paper: dict[tuple[str, str], Any] = field(default_factory=dict)
    note: str = ""

    def set(self, row: str, column: str, value: Any, paper: Any = None) -> None:
        self.cells[(row, column)] = value
        if paper is not None:
            self.paper[(row, column)] = paper

    def _text(self, row: str, column: str) -> str:
        value = self.cells.get((row, column), "—")
        ours = value.format() if isinstance(value, Summary) else str(value)
        theirs = self.paper.get((row, column))
        return ours if theirs is None else f"{ours} (paper {theirs})"

    def to_frame(self) -> pd.DataFrame:
        records = []
        for (row, column), value in self.cells.items():
            rec = {"row": row, "column": column, "paper": self.paper.get((row, column))}
            if isinstance(value, Summary):
                rec.update(mean=value.mean, sd=value.sd, n=value.n)
            else:
                rec.update(value=value)
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def to_markdown(self) -> str:
        cell = _markdown_cell
        lines = [f"### {self.title}", "", "| | " + " | ".join(cell(c) for c in self.columns) + " |",
                 "|---" * (len(self.columns) + 1) + "|"]
        for row in self.rows:
            lines.append(f"| {cell(row)} | " + " | ".join(cell(self._text(row, c)) for c in self.columns) + " |")
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


def _markdown_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: a ``|`` (as in ``q(y|x)``) would end the cell."""
    return str(text).replace("|", "\\|")


@dataclass
class ExperimentReport:
    """What an experiment found. Its ``name``, ``title`` and ``source`` are the registry's
    (:meth:`pyrovae.experiments.registry.Experiment.run` fills them in), written once at ``@register``."""

    settings: dict[str, Any]
    tables: list[ResultTable]
    figures: list[Path] = field(default_factory=list)
    wall_time: float = 0.0
    conclusion: str = ""
    #: each task of the experiment's parallel maps: (its own wall time, whether an earlier run did it)
    task_seconds: list[tuple[float, bool]] = field(default_factory=list)
    #: how many of those tasks each commit of the package computed
    task_commits: dict[str, int] = field(default_factory=dict)
    name: str = ""
    title: str = ""
    source: str = ""

    def task_time(self) -> str:
        """The sum of the tasks' own wall times, across processes and resumed runs ("" without tasks)."""
        if not self.task_seconds:
            return ""
        total = sum(s for s, _ in self.task_seconds)
        reused = sum(1 for _, r in self.task_seconds if r)
        text = (f" Task time {total:.0f} s, summed over the {len(self.task_seconds)} tasks' own wall times "
                f"({reused} done by an earlier run of the same command), across processes.")
        if len(self.task_commits) > 1:
            text += (" Its tasks were computed by more than one version of the code: "
                     + ", ".join(f"{commit} ({count})" for commit, count in sorted(self.task_commits.items())) + ".")
        return text

    def to_markdown(self) -> str:
        settings = ", ".join(f"{k} = {v}" for k, v in self.settings.items())
        parts = [f"## {self.title}", "", f"Reproduces {self.source}. Settings: {settings}. "
                 f"Wall time {self.wall_time:.0f} s (this run).{self.task_time()}", ""]
        parts += [t.to_markdown() for t in self.tables]
        if self.conclusion:
            parts += ["", self.conclusion, ""]
        if self.figures:
            parts += ["Figures: " + ", ".join(f"`{p.name}`" for p in self.figures), ""]
        return "\n".join(parts)

    def write(self, out: Path) -> list[Path]:
        """``report.md``, ``report.json`` and one CSV per table in ``out``."""
        written = []
        for table in self.tables:
            path = out / f"{table.name}.csv"
            write_text(path, table.to_frame().to_csv(index=False))
            written.append(path)
        write_text(out / "report.md", self.to_markdown())
        write_json(out / "report.json", {"name": self.name, "title": self.title, "source": self.source,
                                         "settings": self.settings, "wall_time": self.wall_time,
                                         "task_seconds_summed": sum(s for s, _ in self.task_seconds),
                                         "tasks": len(self.task_seconds),
                                         "tasks_reused": sum(1 for _, r in self.task_seconds if r),
                                         "task_commits": self.task_commits,
                                         "figures": [str(p) for p in self.figures],
                                         "tables": {t.name: t.to_frame().to_dict("records") for t in self.tables}})
        return written + [out / "report.md", out / "report.json"]
