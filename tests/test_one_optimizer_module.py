"""Every optimiser of the package is built in ``pyrovae/optim.py`` (docs/ARCHITECTURE.md): the engine builds
its own through that module's ``adam`` and ``ReplicateAdam``; every other fit steps an ``optim.Minimiser``.

Each module is read with :mod:`ast`; a call that constructs a torch or Pyro optimiser or schedule (import
aliases resolved), or calls ``optim.py``'s constructors directly, outside those two files is a second
optimiser loop in the making. (A constructor reached through ``getattr`` or ``functools.partial`` is not seen.)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"
OWNERS = {"optim.py", "inference/engine.py"}
OPTIMISER_MODULES = ("torch.optim.", "pyro.optim.")  # every class under these (optimisers, schedulers, wrappers)
CONSTRUCTORS = {"pyrovae.optim.adam", "pyrovae.optim.ReplicateAdam", "pyrovae.optim._lbfgs",
                "pyrovae.optim.lr_schedule"}


def _aliases(tree: ast.AST, package: str) -> dict[str, str]:
    """Each name an ``import`` binds, mapped to the dotted name it stands for (a relative import read from
    ``package``, the importing module's package)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                names[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                names[alias.asname or alias.name] = f"{module}.{alias.name}"
    return names


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def optimiser_constructions(source: str, package: str = "pyrovae") -> list[str]:
    """The calls in ``source`` that build an optimiser or a learning-rate schedule: a class of ``torch.optim`` or
    ``pyro.optim`` (under whatever name it was imported), or ``pyrovae.optim``'s own constructors."""
    tree = ast.parse(source)
    aliases = _aliases(tree, package)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not (name := _dotted(node.func)):
            continue
        head, _, rest = name.partition(".")
        resolved = aliases.get(head, head) + (f".{rest}" if rest else "")
        last = resolved.rsplit(".", 1)[-1]
        if (resolved.startswith(OPTIMISER_MODULES) and last[:1].isupper()) or resolved in CONSTRUCTORS:
            found.append(f"{name}() at line {node.lineno}")
    return found


def test_the_detector_finds_each_way_of_building_an_optimiser():
    source = ("import torch\nimport pyro\nimport torch.optim as topt\nfrom torch import optim as o\n"
              "from torch.optim import Adam as A\nfrom pyrovae.optim import adam, ReplicateAdam\n"
              "from pyrovae import optim\nfrom ..optim import ReplicateAdam as RA\nfrom .. import optim as up\n"
              "a = torch.optim.SGD(p, lr=1)\nb = pyro.optim.ClippedAdam({'lr': 1})\nc = adam(p, 1)\n"
              "d = optim.ReplicateAdam(p, 1)\ne = topt.LBFGS(p)\nf = o.Adam(p)\ng = A(p)\n"
              "h = torch.optim.lr_scheduler.StepLR(a, 1)\nm = RA(p, 1)\nn = up.adam(p, 1)\n"
              "i = Minimiser.adam(p, 1)\nj = myoptim.Adam(p)\nk = model.adam(p)\nl = torch.optim.Optimizer\n")
    assert [c.split("(")[0] for c in optimiser_constructions(source, "pyrovae.inference")] == [
        "torch.optim.SGD", "pyro.optim.ClippedAdam", "adam", "optim.ReplicateAdam", "topt.LBFGS", "o.Adam", "A",
        "torch.optim.lr_scheduler.StepLR", "RA", "up.adam"]


def test_no_module_but_optim_and_the_engine_builds_an_optimiser():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        package = ".".join(["pyrovae", *path.relative_to(PACKAGE).parent.parts])
        if relative not in OWNERS and (found := optimiser_constructions(path.read_text(), package)):
            offenders[relative] = found
    assert not offenders, f"optimisers built outside optim.py and the engine: {offenders}"
