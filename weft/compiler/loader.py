"""Load a program: the .flow files named, what they import, extension files,
and the Python action modules their `use` lines bind.

Installed packages contribute through two entry point groups:

    weft.extensions   each loads to the path of an extension .flow file (or a folder of them)
    weft.actions      each loads to an action module; the entry point's name is an alias
                      every file sees without a `use` line, as it sees `std`; a file's
                      own `use ... as NAME` takes precedence
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.parse import parse_module
from weft.sdk.actions import undo_problems

MAX_FILE_BYTES = 8 * 1024 * 1024
STD_MODULE = "weft.stdlib_actions"


@dataclass
class Unit:
    """One parsed .flow file and the Python modules its aliases are bound to."""

    path: str
    text: str
    module: ast.Module
    aliases: dict[str, ModuleType | None] = field(default_factory=dict)
    search_path: list[str] = field(default_factory=list)
    extension: bool = False  # loaded as an extension, not as a flow source


@dataclass
class FlowDef:
    flow: ast.Flow
    unit: Unit


@dataclass
class Program:
    units: list[Unit] = field(default_factory=list)
    flows: dict[str, FlowDef] = field(default_factory=dict)
    extensions: dict[str, list[tuple[ast.Extend, Unit]]] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)  # extension folders searched for .flow files

    def search_path(self) -> list[str]:
        seen: dict[str, None] = {}
        for u in self.units:
            seen.update(dict.fromkeys(u.search_path))
        return list(seen)


def read_source(path: str, sink: Sink, at: ast.Span | None = None) -> str | None:
    """The text of a .flow file, or None with an E003/E121 diagnostic."""
    code, where = ("E121", at) if at else ("E003", ast.Span(path, 1, 1, 1, 1))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe opens at once, to be refused: never waited on
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError("is a directory")
            if not stat.S_ISREG(mode):  # a pipe, /dev/stdin (an editor server's own requests) or a device
                raise OSError("not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: the file may grow as it is read
        if len(data) > MAX_FILE_BYTES:
            sink.add(code, where, f"cannot read {path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
            return None
    except OSError as e:
        sink.add(code, where, f"cannot read {path}: {e.strerror or e}")
        return None
    if b"\0" in data:
        sink.add(code, where, f"cannot read {path}: it is a binary file, not .flow text")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        sink.add("E003", ast.Span(path, line, 1, line, 1), f"{path} is not UTF-8 text (byte {e.start})")
        return None


class Loader:
    def __init__(self, sink: Sink, sources: dict[str, str] | None = None) -> None:
        self.sink = sink
        self.sources = sources or {}  # unsaved editor buffers, by absolute path
        self.program = Program()
        self._loaded: dict[str, Unit] = {}
        self._packaged: dict[str, ModuleType | None] | None = None

    def load(self, path: str, at: ast.Span | None = None, extension: bool = False) -> Unit | None:
        unit, new = self._open(path, at, extension)
        if new:
            self._bind(unit)
        return unit

    def _open(self, path: str, at: ast.Span | None, extension: bool) -> tuple[Unit | None, bool]:
        """The parsed file, and whether it was read just now (its items still to bind)."""
        path = os.path.abspath(path)
        if path in self._loaded:
            return self._loaded[path], False
        text = self.sources.get(path)
        if text is None:
            text = read_source(path, self.sink, at)
        if text is None:
            return None, False
        unit = Unit(path, text, parse_module(text, path, self.sink), extension=extension)
        self._loaded[path] = unit
        self.program.units.append(unit)
        unit.aliases["std"] = importlib.import_module(STD_MODULE)
        unit.aliases.update(self.packaged_modules())
        return unit, True

    def _bind(self, first: Unit) -> None:
        """Bind the items of a file and, where it imports another, of that file first, in
        source order as a recursion would, but with a stack: imports may chain deep."""
        stack = [(first, iter(first.module.items))]
        while stack:
            unit, items = stack[-1]
            item = next(items, None)
            if item is None:
                stack.pop()
            elif isinstance(item, ast.Use):
                unit.aliases[item.alias] = self._import_module(item, unit)
            elif isinstance(item, ast.Import):
                target = os.path.join(os.path.dirname(unit.path), item.path)
                imported, new = self._open(target, item.span, unit.extension)
                if new:
                    stack.append((imported, iter(imported.module.items)))
            elif isinstance(item, ast.Flow):
                self._add_flow(item, unit)
            elif isinstance(item, ast.Extend):
                self.program.extensions.setdefault(item.flow, []).append((item, unit))

    def _add_flow(self, flow: ast.Flow, unit: Unit) -> None:
        prior = self.program.flows.get(flow.name)
        if prior is not None:
            self.sink.add(
                "E109",
                flow.name_span,
                f"flow '{flow.name}' is already defined at {prior.flow.name_span.seen_from(flow.span.file)}",
            )
            return
        self.program.flows[flow.name] = FlowDef(flow, unit)

    def _import_module(self, use: ast.Use, unit: Unit) -> ModuleType | None:
        dirs = module_roots(use.module, os.path.dirname(unit.path))
        for d in dirs:
            if d not in unit.search_path:
                unit.search_path.append(d)
        for d in reversed(dirs):
            if d not in sys.path:
                sys.path.insert(0, d)
        try:
            mod = importlib.import_module(use.module)
        except ModuleNotFoundError as e:
            if e.name and use.module.startswith(e.name):
                self.sink.add(
                    "E104",
                    use.span,
                    f"cannot find Python module '{use.module}'",
                    "modules are found on the Python path and in the folders around the .flow file",
                )
            else:
                self.sink.add("E117", use.span, f"module '{use.module}' failed to import: {e}")
        except Exception as e:  # an action module's own error, reported, never raised
            message = str(e).strip() or type(e).__name__
            self.sink.add("E117", use.span, f"module '{use.module}' failed to import: {message}")
        else:
            for problem in undo_problems(mod):  # an undo given by name (`undo="release"`) that is not there
                self.sink.add("E117", use.span, problem)
            return mod
        return None

    def load_extensions(self, dirs: list[str]) -> None:
        """Extension .flow files from folders and from the `weft.extensions` entry points.

        An extension of a flow this program does not define does not apply: installed
        packages extend the flows they know of, and a program holds only some of them.
        An `extend` block in a file named directly still reports the missing flow (E113).
        """
        for d in list(dirs) + self._entry_point_paths():
            if os.path.isfile(d):
                self.load(d, extension=True)
                continue
            if not os.path.isdir(d):
                self.sink.add("E121", ast.Span(d, 1, 1, 1, 1), f"extension folder {d} does not exist")
                continue
            self.program.folders.append(d)
            for root, subdirs, files in os.walk(d):
                subdirs[:] = sorted(s for s in subdirs if searched(s))
                for name in sorted(files):
                    if name.endswith(".flow"):
                        self.load(os.path.join(root, name), extension=True)
        program = self.program
        for name in [n for n in program.extensions if n not in program.flows]:
            named = [(e, u) for e, u in program.extensions[name] if not u.extension]
            if named:
                program.extensions[name] = named
            else:
                del program.extensions[name]

    def _entry_point_paths(self) -> list[str]:
        """Extension .flow files or folders that installed packages declare (`weft.extensions`)."""
        found = []
        for ep in metadata.entry_points(group="weft.extensions"):
            try:
                found.append(str(ep.load()))
            except Exception as e:  # a broken third-party package is reported, not fatal
                self.sink.add("E121", _entry_point_span(ep), f"extension entry point '{ep.name}' failed to load: {e}")
        return sorted(found)

    def packaged_modules(self) -> dict[str, ModuleType | None]:
        """Action modules of installed packages (`weft.actions`) by alias; None for one that failed to load."""
        if self._packaged is not None:
            return self._packaged
        self._packaged = {}
        for ep in sorted(metadata.entry_points(group="weft.actions"), key=lambda e: (e.name, e.value)):
            where = _entry_point_span(ep)
            if not ep.name.isidentifier() or ep.name == "std":
                self.sink.add("E121", where, f"action entry point '{ep.name}' is not a usable alias")
                continue
            if ep.name in self._packaged:
                self.sink.add("E121", where, f"action entry point '{ep.name}' is declared by two packages")
                continue
            try:
                module = ep.load()
            except Exception as e:  # a broken third-party package is reported, not fatal
                self.sink.add("E121", where, f"action entry point '{ep.name}' failed to load: {e}")
                module = None
            if module is not None and not isinstance(module, ModuleType):
                self.sink.add("E121", where, f"action entry point '{ep.name}' must name a module, not {ep.value}")
                module = None
            self._packaged[ep.name] = module
        return self._packaged


_NOT_SEARCHED = {"build", "dist", "node_modules", "__pycache__", "venv", "site-packages"}


def searched(folder: str) -> bool:
    """Whether a folder found inside one named is searched for .flow files: not hidden
    folders (.git, .venv), nor build output and installed copies (build/, dist/,
    *.egg-info), which hold second copies of the very files next to them."""
    return not (folder.startswith(".") or folder in _NOT_SEARCHED or folder.endswith(".egg-info"))


def _entry_point_span(ep: metadata.EntryPoint) -> ast.Span:
    return ast.Span(f"<entry point {ep.name} = {ep.value}>", 1, 1, 1, 1)


def module_roots(dotted: str, start: str) -> list[str]:
    """Folders at or above `start` from which `dotted` names a Python module, nearest first."""
    rel = dotted.replace(".", os.sep)
    roots = []
    d = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(d, rel + ".py")) or os.path.isfile(os.path.join(d, rel, "__init__.py")):
            roots.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    cwd = os.getcwd()
    if cwd not in roots:
        roots.append(cwd)
    return roots
