"""The layout's boundaries: no import cycles between modules, and the layers import downwards only."""

from __future__ import annotations

import ast
import subprocess
import sys
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


# -- what a command imports ----------------------------------------------------------------------

# Packages a command must not import unless it needs them: the event loop and TLS (async actions, the HTTP
# client), time zones and cron lines (schedules), the server, the broker, the compiler's parser and graphs
# (a cached plan), the live terminal report (stdout is not a terminal here).
HEAVY = (
    "asyncio",
    "ssl",
    "zoneinfo",
    "croniter",
    "fastapi",
    "starlette",
    "uvicorn",
    "celery",
    "redis",
    "kombu",
    "networkx",
    "lark",
    "rich",
    "httpx",
    "pygraphviz",
)
_IMPORTS_OF = (
    "import atexit, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print('IMPORTED', ','.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))))\n"
    "from weft.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _loaded(folder: Path, *args: str) -> tuple[str, str]:
    """(the HEAVY packages one `weft ARGS` process imported, its output); the store is `folder`/store."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_OF, *args, "--store", str(folder / "store")],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    *out, imported = done.stdout.splitlines()
    return imported.removeprefix("IMPORTED "), "\n".join(out)


def test_commands_on_a_sync_flow_import_only_what_they_need(tmp_path):
    flow = tmp_path / "one.flow"
    flow.write_text('flow one() {\n    a = std.echo(value: 1)\n    std.log(message: "done")\n}\n', encoding="utf-8")
    out = _loaded(tmp_path, "run", str(flow))[1]  # compiles the flow and caches its plan
    rid = out.split()[1]
    assert _loaded(tmp_path, "run", str(flow))[0] == ""  # the cached plan
    assert _loaded(tmp_path, "list")[0] == ""
    assert _loaded(tmp_path, "show", rid)[0] == ""
    assert _loaded(tmp_path, "show", rid, "a")[0] == ""
    assert _loaded(tmp_path, "show", rid, "--json")[0] == ""
