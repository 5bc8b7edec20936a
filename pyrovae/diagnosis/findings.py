"""What a check reports: a :class:`Finding` (verdict, number, threshold and its source, remedy and the
command to try) and the :class:`Diagnosis` of one run (its findings in order, the top remedy)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Finding", "Diagnosis", "VERDICTS", "Remedy"]

#: Verdicts from best to worst; ``skipped`` is a check that does not apply to the run.
VERDICTS = ("ok", "warning", "failure", "skipped")
_SEVERITY = {"skipped": -1, "ok": 0, "warning": 1, "failure": 2}


@dataclass
class Remedy:
    """What the papers support against a finding, and the settings that apply it to the run."""

    name: str  # short name, e.g. "calibrate"
    text: str  # what to do and why, with its source
    changes: dict[str, Any]  # RunConfig fields to change (None: back to the kind's default)
    command: str = ""  # the exact `pyrovae train ...` line (filled in by the diagnosis)


@dataclass
class Finding:
    """One check's result.

    ``value`` is the number behind the verdict, ``threshold`` says where the verdict changes and
    ``source`` where that threshold comes from (paper, equation, or "ours"). ``details`` carries the
    arrays a report draws (per-dimension KL, per-point KL, ...), JSON-able."""

    check: str
    verdict: str
    value: float | None
    threshold: str
    source: str
    summary: str
    remedy: Remedy | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.value is not None and not math.isfinite(self.value):
            self.value = None

    @property
    def severity(self) -> int:
        return _SEVERITY[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Diagnosis:
    """The findings of one run directory, in the order the checks ran."""

    run_dir: str
    model: str
    config: dict[str, Any]
    findings: list[Finding]
    seconds: float = 0.0
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG (not in the JSON)

    @property
    def verdict(self) -> str:
        """The worst verdict among the findings (``ok`` when every check passed or was skipped)."""
        worst = max((f.severity for f in self.findings), default=0)
        return {v: k for k, v in _SEVERITY.items()}[max(worst, 0)]

    @property
    def top_remedy(self) -> Remedy | None:
        """The remedy of the first failure (else of the first warning) that has one."""
        for level in ("failure", "warning"):
            for f in self.findings:
                if f.verdict == level and f.remedy is not None:
                    return f.remedy
        return None

    def finding(self, check: str) -> Finding:
        """The finding of ``check`` (KeyError when that check did not run)."""
        for f in self.findings:
            if f.check == check:
                return f
        raise KeyError(check)

    def to_dict(self) -> dict[str, Any]:
        top = self.top_remedy
        return {"run_dir": self.run_dir, "model": self.model, "verdict": self.verdict, "seconds": self.seconds,
                "top_remedy": None if top is None else asdict(top), "config": self.config,
                "findings": [f.to_dict() for f in self.findings]}
