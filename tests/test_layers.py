"""The package's import arrows point downward and form no circle (docs/ARCHITECTURE.md, "Layers").

Every ``import`` statement of the package is read with :mod:`ast`, function-level ones included
(an import inside a function is still a dependency); only ``if TYPE_CHECKING:`` blocks are left
out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"

#: The rank of each part of the package: a module may import only from a part of lower rank (or
#: from its own part). Foundations at the bottom, the library in the middle, paper code and the
#: command line at the top.
RANKS = {
    "errors": 0,
    "validation": 1, "optim": 1, "runs": 1, "plots": 1, "registry": 1,
    "executors": 2,
    "data": 3,
    "models": 4,
    "metrics": 5, "theory": 5,
    "inference": 6,
    "posterior": 7, "baselines": 7,
    "model_kinds": 8,
    "combinations": 9,
    "config": 10,
    "api": 11,
    "diagnosis": 12, "experiments": 12,
    "papers": 13,
    "cli": 14,
    "__main__": 15,
    "__init__": 16,  # the package's lazy front door (PEP 562) may name anything
}

#: Parts that hold mathematics only: no figures and no files.
PURE = ("models", "theory")
NOT_IN_PURE = ("matplotlib", "pyrovae.plots", "pyrovae.runs", "json")


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def _imports(path: Path, package_root: Path = PACKAGE) -> list[str]:
    """The absolute names imported by one file. ``from a import b`` gives ``a.b`` only: a module ``b``
    when there is one, else a name that :func:`_graph` resolves to the module ``a``."""
    module = _module_name(path, package_root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _graph(package: Path = PACKAGE) -> nx.DiGraph:
    """Module → module arrows inside the package (a name resolves to the longest module it starts with)."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for module, path in files.items():
        for name in _imports(path, package):
            target = name
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target not in (module, "pyrovae"):
                graph.add_edge(module, target)
    return graph


def test_every_part_of_the_package_has_a_rank():
    parts = {_part(m) for m in _graph()}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


def test_imports_point_downward():
    upward = sorted(f"{a} -> {b}" for a, b in _graph().edges
                    if _part(a) != _part(b) and RANKS[_part(b)] >= RANKS[_part(a)])
    assert upward == []


def test_no_import_circle():
    circles = [sorted(c) for c in nx.strongly_connected_components(_graph()) if len(c) > 1]
    assert circles == []


@pytest.mark.parametrize("part", PURE)
def test_models_and_theory_draw_no_figures_and_touch_no_files(part):
    offending = sorted(f"{_module_name(p)} imports {name}" for p in (PACKAGE / part).rglob("*.py")
                       for name in _imports(p) if name.startswith(NOT_IN_PURE))
    assert offending == []


def test_the_checker_sees_an_upward_arrow_and_a_circle(tmp_path):
    """The checks above can fail: a toy package with an arrow from data up to models, and back."""
    toy = tmp_path / "pyrovae"
    (toy / "data").mkdir(parents=True)
    (toy / "models").mkdir()
    (toy / "__init__.py").write_text("")
    (toy / "data" / "__init__.py").write_text("")
    (toy / "models" / "__init__.py").write_text("")
    (toy / "data" / "a.py").write_text("def f():\n    from pyrovae.models.b import g\n")
    (toy / "models" / "b.py").write_text("from ..data import a\nfrom typing import TYPE_CHECKING\n"
                                         "if TYPE_CHECKING:\n    from pyrovae.models import c\n")
    (toy / "models" / "c.py").write_text("from pyrovae.models.b import x\n")
    graph = _graph(toy)
    assert ("pyrovae.data.a", "pyrovae.models.b") in graph.edges
    assert ("pyrovae.models.b", "pyrovae.data.a") in graph.edges
    assert ("pyrovae.models.b", "pyrovae.models.c") not in graph.edges  # TYPE_CHECKING only
    assert {"pyrovae.data.a", "pyrovae.models.b"} in [set(c) for c in nx.strongly_connected_components(graph)]
