"""Compiled programs cached between processes, per user, beside Lark's parse tables.

`compile_cached` answers what `compile_paths` would, from an entry written by
an earlier process when nothing it was made from changed:

- the key: the files and extension folders named, the working directory and
  Python path (where modules are found), the Python version, and the stat of
  every source file of the compiler, the Plan schema, the SDK and the standard
  actions (an upgrade or an edit of Weft itself makes a new key);
- in the entry: the content hash of every .flow file read (imports and
  extensions too), of the source files of every action module bound (a
  package's loaded submodules too) and of every other module loaded that is
  not the interpreter's, an installed package's or Weft's own (what action
  modules import: shared result types), the .flow files found in each extension
  folder, and the modification times of the site-packages folders (installed
  packages contribute actions and extensions through entry points).

A Plan's steps are written once for what they share (weft.plan.shared), and
read back sharing it: a 50,000-step flow's Plan is 5 MB in its entry and
76 MB in memory, not 19 and 133. A miss returns the Plans a hit would give
(unpacked from what it stored), so every run of a flow holds the same. Only
compiles without errors are kept (warnings are kept and shown again), so
`weft check` prints what it printed before. An entry that cannot be read, does
not decode or has an unexpected shape is ignored and written anew. Entries
are msgpack (never pickle), files of mode 0600 in a folder of mode 0700;
the oldest are removed past MAX_ENTRIES. WEFT_PLAN_CACHE=off turns the cache
off, WEFT_PLAN_CACHE=debug says on stderr what it did ("plan cache: hit ...").
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, fields
import os
import sys
import tempfile
from types import ModuleType

import msgpack

from weft.compiler import Compilation, compile_paths
from weft.plan.shared import pack_plan, uncollected, unpack_plan

FORMAT = 3  # 3: the steps of a Plan packed (weft.plan.shared)
MAX_ENTRIES = 256
_WEFT_PARTS = ("compiler", "grammar", "plan", "sdk", "stdlib_actions")
_PATH = list(sys.path)  # as the process began: the loader puts the folders of the modules it binds first
_WEFT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def folder(*parts: str) -> str | None:
    """The per-user cache folder (`$XDG_CACHE_HOME/weft`, else `~/.cache/weft`), or a folder in it,
    made with mode 0700; None when it cannot be made."""
    path = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "weft", *parts)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path


def compile_cached(paths: list[str], extensions: list[str] = (), *, plans: bool = True) -> Compilation:
    """`compile_paths(paths, extensions, plans=plans)`, from the cache when nothing it read changed."""
    mode = os.environ.get("WEFT_PLAN_CACHE", "")
    where = None if mode == "off" else folder("plans")
    if where is None:
        return compile_paths(paths, list(extensions), plans=plans)
    key = _key(paths, extensions, plans)
    entry = os.path.join(where, key + ".plan")
    with uncollected():
        found, why = _load(entry)
    if found is not None:
        _say(mode, f"hit {entry}")
        return found
    result = compile_paths(paths, list(extensions), plans=plans)
    if result.has_errors:
        _say(mode, f"miss ({why}); not stored: the program has errors")
        return result
    with uncollected():  # (what compiling left would be traversed by every collection)
        packed = _store(where, entry, result)
        if packed is not None:  # the Plans a hit would give, their steps sharing (the compiled ones are let go)
            result.plans = {name: unpack_plan(data) for name, data in packed.items()}
    _say(mode, f"miss ({why}); stored {entry}")
    return result


def _say(mode: str, text: str) -> None:
    if mode == "debug":
        print(f"plan cache: {text}", file=sys.stderr)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return _digest(f.read())
    except OSError:
        return None


def _key(paths: list[str], extensions: list[str], plans: bool) -> str:
    stats = []
    for part in _WEFT_PARTS:
        for root, dirs, files in os.walk(os.path.join(_WEFT_ROOT, part)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".lark")):
                    path = os.path.join(root, name)
                    try:
                        st = os.stat(path)
                    except OSError:  # gone since the folder was listed
                        continue
                    stats.append((os.path.relpath(path, _WEFT_ROOT), st.st_mtime_ns, st.st_size))
    material = [
        FORMAT,
        [os.path.abspath(p) for p in paths],
        [os.path.abspath(e) for e in extensions],
        plans,
        sys.version,
        os.getcwd(),
        _PATH,
        stats,
    ]
    return _digest(msgpack.packb(material))[:40]


def _sites() -> list[list]:
    """The site-packages folders on the path and their modification times (a package installed
    or removed there changes them)."""
    found = []
    for d in sys.path:
        if os.path.basename(d) in ("site-packages", "dist-packages"):
            try:
                found.append([d, os.stat(d).st_mtime_ns])
            except OSError:
                found.append([d, None])
    return found


def _flow_files(d: str) -> list[str]:
    from weft.compiler.loader import searched

    found = []
    for root, dirs, files in os.walk(d):
        dirs[:] = sorted(s for s in dirs if searched(s))
        found += [os.path.join(root, n) for n in sorted(files) if n.endswith(".flow")]
    return found


# -- entries ---------------------------------------------------------------------------------------


def _load(entry: str) -> tuple[Compilation | None, str]:
    """The Compilation an entry holds, or None and why it cannot serve."""
    try:
        with open(entry, "rb") as f:
            data = msgpack.unpackb(f.read(), raw=False)
    except FileNotFoundError:
        return None, "no entry"
    except Exception as e:  # unreadable or undecodable: ignored, and written anew
        return None, f"entry ignored: {type(e).__name__}"
    try:
        if data["format"] != FORMAT:
            return None, "entry of another format"
        stale = _stale(data["inputs"])
        if stale:
            return None, stale
        return _compilation(data["result"]), ""
    except Exception as e:  # a shape this version did not write
        return None, f"entry ignored: {type(e).__name__}"


def _stale(inputs: dict) -> str | None:
    """What changed since the entry was written, or None."""
    for path, digest in inputs["files"] + inputs["modules"]:
        if _file_digest(path) != digest:
            return f"{path} changed"
    for d, files in inputs["folders"]:
        if _flow_files(d) != files:
            return f"the .flow files in {d} changed"
    if inputs["sites"] != _sites():
        return "installed packages changed"
    return None


def _inputs(result: Compilation) -> dict:
    program = result.program
    files = [[u.path, _digest(u.text.encode("utf-8"))] for u in program.units]
    modules: dict[str, str | None] = {}
    for unit in program.units:
        for mod in unit.aliases.values():
            if isinstance(mod, ModuleType):
                for path in _module_files(mod):
                    modules.setdefault(path, _file_digest(path))
    for path in _local_files():
        modules.setdefault(path, _file_digest(path))
    return {
        "files": files,
        "modules": [[p, d] for p, d in modules.items()],
        "folders": [[d, _flow_files(d)] for d in map(os.path.abspath, program.folders)],
        "sites": _sites(),
    }


def _module_files(mod: ModuleType) -> list[str]:
    """The source files of an action module: its own, and those of its package's loaded submodules."""
    files = [getattr(mod, "__file__", None)]
    if hasattr(mod, "__path__"):
        prefix = mod.__name__ + "."
        files += [getattr(m, "__file__", None) for name, m in list(sys.modules.items()) if name.startswith(prefix)]
    return sorted({f for f in files if f})


def _local_files() -> list[str]:
    """The source files of every module loaded that is neither the interpreter's, an installed package's nor
    Weft's own (those are in the key): what the action modules bound import (their result types) with them."""
    theirs = tuple(
        os.path.join(os.path.abspath(p), "") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, _WEFT_ROOT}
    )
    found = set()
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and not os.path.abspath(path).startswith(theirs):
            found.add(os.path.abspath(path))
    return sorted(found)


def _store(where: str, entry: str, result: Compilation) -> dict[str, bytes] | None:
    """Write the entry (atomically, mode 0600); a cache that cannot be written is no error. Returns the Plans
    packed (weft.plan.shared), None if one cannot be."""
    named = {d.span.file for d in result.diagnostics}
    try:
        plans = {name: pack_plan(plan) for name, plan in result.plans.items()}
    except (TypeError, ValueError):  # a value msgpack cannot write: nothing is kept
        return None
    data = {
        "format": FORMAT,
        "inputs": _inputs(result),
        "result": {
            "files": result.files,
            "diagnostics": [
                {**{f.name: getattr(d, f.name) for f in fields(d)}, "span": astuple(d.span)} for d in result.diagnostics
            ],
            "sources": {p: t for p, t in result.sources.items() if p in named},
            "flows": result.flows,
            "plans": plans,
            "extensions": result.extensions,
            "defined": sorted(result.defined),
        },
    }
    try:
        fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(msgpack.packb(data, use_bin_type=True))
        os.replace(tmp, entry)
    except (OSError, TypeError, ValueError):
        return plans
    _prune(where)
    return plans


def _prune(where: str) -> None:
    """Remove the oldest entries once there are more than MAX_ENTRIES."""
    try:
        names = [n for n in os.listdir(where) if n.endswith((".plan", ".tmp"))]
        if len(names) <= MAX_ENTRIES:
            return
        aged = sorted(names, key=lambda n: os.stat(os.path.join(where, n)).st_mtime_ns)
        for name in aged[: len(names) - MAX_ENTRIES * 3 // 4]:
            os.unlink(os.path.join(where, name))
    except OSError:
        return


def _compilation(r: dict) -> Compilation:
    if r["diagnostics"]:
        from weft.compiler.ast import Span
        from weft.compiler.diagnostics import Diagnostic
    return Compilation(
        files=r["files"],
        diagnostics=[Diagnostic(**{**d, "span": Span(*d["span"])}) for d in r["diagnostics"]],
        sources=r["sources"],
        flows=r["flows"],
        plans={name: unpack_plan(data) for name, data in r["plans"].items()},
        extensions=r["extensions"],
        defined=set(r["defined"]),
    )
