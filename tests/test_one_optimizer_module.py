"""Every optimiser of the package is built in ``pyrovae/optim.py`` (docs/ARCHITECTURE.md): the engine builds
its own through that module's ``adam`` and ``ReplicateAdam``; every other fit steps an ``optim.Minimiser``.

Each module is read with :mod:`ast`; a call that constructs a torch or Pyro optimiser, or calls ``optim.py``'s
constructors directly, outside those two files is a second optimiser loop in the making.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"
OWNERS = {"optim.py", "inference/engine.py"}
OPTIMISERS = {name for name in dir(torch.optim) if isinstance(getattr(torch.optim, name), type)
              and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)}
CONSTRUCTORS = {"adam", "ReplicateAdam"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def optimiser_constructions(source: str) -> list[str]:
    """The calls in ``source`` that build an optimiser: ``torch.optim.X(...)`` / ``pyro.optim.X(...)`` /
    ``optim.X(...)`` for an optimiser class X, a bare ``Adam(...)`` of one, or ``adam(...)`` / ``ReplicateAdam(...)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        bare_or_optim = name == last or name.endswith(f"optim.{last}")  # not Minimiser.adam, model.Adam
        if bare_or_optim and (last in CONSTRUCTORS or last in OPTIMISERS):
            found.append(f"{name}() at line {node.lineno}")
    return found


def test_the_detector_finds_each_way_of_building_an_optimiser():
    source = ("opt = torch.optim.SGD(p, lr=1)\nb = pyro.optim.Adam({'lr': 1})\nc = adam(p, 1)\n"
              "d = optim.ReplicateAdam(p, 1)\ne = LBFGS(p)\nf = Minimiser.adam(p, 1)\ng = model.adam_like(p)\n")
    assert [c.split("(")[0] for c in optimiser_constructions(source)] == [
        "torch.optim.SGD", "pyro.optim.Adam", "adam", "optim.ReplicateAdam", "LBFGS"]


def test_no_module_but_optim_and_the_engine_builds_an_optimiser():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative not in OWNERS and (found := optimiser_constructions(path.read_text())):
            offenders[relative] = found
    assert not offenders, f"optimisers built outside optim.py and the engine: {offenders}"
