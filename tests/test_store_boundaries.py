"""The store port is the only way to storage: backends are imported by the store factory alone."""

from __future__ import annotations

import ast
import os

import weft

ROOT = os.path.dirname(os.path.abspath(weft.__file__))
STORES = os.path.join(ROOT, "runtime", "stores")
BACKENDS = ("weft.runtime.stores.lmdb", "weft.runtime.stores.memory")


def imports(path: str) -> set[str]:
    """Every module `path` imports (`from a import b` counts as a and a.b)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(ROOT) for f in files if f.endswith(".py")]


def test_only_the_lmdb_backend_imports_lmdb():
    bad = [
        os.path.relpath(p, ROOT)
        for p in modules()
        if not p.startswith(os.path.join(STORES, "lmdb") + os.sep)
        and any(m == "lmdb" or m.startswith("lmdb.") for m in imports(p))
    ]
    assert bad == []


def test_nothing_outside_the_stores_imports_a_backend():
    bad = [
        os.path.relpath(p, ROOT)
        for p in modules()
        if not p.startswith(STORES + os.sep) and any(m.startswith(BACKENDS) for m in imports(p))
    ]
    assert bad == []
