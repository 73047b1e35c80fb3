"""The flows a server may start: every flow of the .flow files under its `--flows` folders.

Compiled at start and again when a file changes, appears or goes (looked at
no more often than every RECHECK seconds, when the catalogue is read). A file
with errors contributes no flow and its first diagnostics are listed; a
flow name defined by two files is taken from the first path in sort order.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from weft.client import NotFound
from weft.render.style import expr_text, type_text

RECHECK = 1.0  # seconds between looks at the folders
SHOWN = 5  # diagnostics kept per file with errors


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # as the flow writes it: list[str], {name: str, ip?: str}
    schema: list  # the type as Plan data (weft.plan.types)
    default: str | None  # the default's expression, as written; None: required
    secret: bool


@dataclass(frozen=True)
class Result:
    name: str
    type: str


@dataclass(frozen=True)
class FlowSummary:
    name: str
    file: str
    params: tuple[Param, ...]
    results: tuple[Result, ...]
    steps: int
    levels: tuple[tuple[str, ...], ...]  # run-phase step ids, by parallel level
    critical_path: tuple[str, ...]
    label: str | None  # the label's expression, as written
    tags: tuple[str, ...]


@dataclass(frozen=True)
class FileProblem:
    file: str
    line: int
    column: int
    message: str


@dataclass(frozen=True)
class Flow:
    summary: FlowSummary
    plan: dict


def summary_of(plan: dict, file: str) -> FlowSummary:
    run = [s for s in plan["steps"] if s["phase"] == "run"]
    depth = max((s["level"] for s in run), default=-1) + 1
    return FlowSummary(
        name=plan["flow"],
        file=file,
        params=tuple(
            Param(
                p["name"],
                type_text(p["type"]),
                p["type"],
                None if p["default"] is None else expr_text(p["default"]),
                bool(p.get("secret")),
            )
            for p in plan["params"]
        ),
        results=tuple(Result(r["name"], type_text(r["type"])) for r in plan["results"]),
        steps=len(plan["steps"]),
        levels=tuple(tuple(s["id"] for s in run if s["level"] == n) for n in range(depth)),
        critical_path=tuple(plan["critical_path"]),
        label=None if plan["label"] is None else expr_text(plan["label"]),
        tags=tuple(plan["tags"]),
    )


class Catalog:
    """The flows of `folders`, kept up to date with their files."""

    def __init__(self, folders: tuple[str, ...]) -> None:
        self.folders = tuple(os.path.abspath(f) for f in folders)
        self._guard = threading.Lock()
        self._compiled: dict[str, tuple[tuple[int, int], list[Flow], list[FileProblem]]] = {}
        self._flows: dict[str, Flow] = {}
        self._problems: tuple[FileProblem, ...] = ()
        self._looked = float("-inf")
        self.refresh()

    def _files(self) -> dict[str, tuple[int, int]]:
        found = {}
        for folder in self.folders:
            for root, dirs, names in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    if n.endswith(".flow"):
                        path = os.path.join(root, n)
                        try:
                            st = os.stat(path)
                        except OSError:
                            continue
                        found[path] = (st.st_mtime_ns, st.st_size)
        return found

    def refresh(self, force: bool = True) -> None:
        """Compile what changed since the last look (at most every RECHECK seconds unless `force`)."""
        with self._guard:
            now = time.monotonic()
            if not force and now - self._looked < RECHECK:
                return
            self._looked = now
            files = self._files()
            if files.keys() == self._compiled.keys() and all(self._compiled[p][0] == s for p, s in files.items()):
                return
            self._compiled = {
                p: self._compiled[p] if p in self._compiled and self._compiled[p][0] == stamp else (stamp, *_compile(p))
                for p, stamp in files.items()
            }
            flows: dict[str, Flow] = {}
            problems: list[FileProblem] = []
            for path in sorted(self._compiled):
                _, made, found = self._compiled[path]
                problems += found
                for flow in made:
                    flows.setdefault(flow.summary.name, flow)
            self._flows, self._problems = flows, tuple(problems)

    def flows(self) -> list[FlowSummary]:
        self.refresh(force=False)
        return [f.summary for _, f in sorted(self._flows.items())]

    def problems(self) -> tuple[FileProblem, ...]:
        self.refresh(force=False)
        return self._problems

    def get(self, name: str) -> Flow:
        self.refresh(force=False)
        flow = self._flows.get(name)
        if flow is None:
            raise NotFound(f"no flow {name!r} in the catalogue (GET /api/v1/flows lists them)")
        return flow


def _compile(path: str) -> tuple[list[Flow], list[FileProblem]]:
    from weft.compiler import compile_paths

    result = compile_paths([path], [])
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors:
        return [], [_problem(path, d) for d in sorted(errors, key=lambda d: d.sort_key())[:SHOWN]]
    flows = []
    for name in result.flows:
        plan = result.plan(name)
        flows.append(Flow(summary_of(plan, path), plan))
    return flows, []


def _problem(path: str, d) -> FileProblem:
    return FileProblem(d.span.file or path, d.span.line, d.span.col, f"{d.code}: {d.message}")
