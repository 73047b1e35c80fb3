"""The layout's boundaries: no import cycles between modules, and the layers import downwards only."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "weft"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports() -> nx.DiGraph:
    """Module -> module it imports when it is loaded (top-level statements; `from pkg import sub` is sub)."""
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [node.module, *subs]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_no_module_imports_itself_through_others():
    assert list(nx.simple_cycles(_imports())) == []


def test_layers_import_downwards():
    graph = _imports()
    forbidden = {
        "weft.plan": ("weft.compiler", "weft.runtime", "weft.client", "weft.cli", "weft.render", "weft.lsp"),
        "weft.runtime": ("weft.compiler", "weft.client", "weft.cli", "weft.lsp", "weft.render"),
        "weft.runtime.core": ("weft.runtime.engine", "weft.runtime.stores", "weft.runtime.executors"),
        "weft.compiler": ("weft.runtime", "weft.client", "weft.cli"),
        "weft.client": ("weft.cli",),
    }
    wrong = [
        f"{a} imports {b}"
        for a, b in graph.edges
        for layer, below in forbidden.items()
        if (a == layer or a.startswith(layer + ".")) and any(b == x or b.startswith(x + ".") for x in below)
    ]
    assert wrong == []
