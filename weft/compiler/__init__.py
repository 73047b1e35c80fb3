"""The Weft compiler: .flow files -> diagnostics and versioned Plans.

The passes run in this order, one module each:

    parse -> resolve -> types -> check -> lower -> optimize (optimize/*) -> plan

`compile_paths` runs them all; the CLI, the editor server and the runtime's
`weft run` call it and never the passes one by one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from weft.errors import WeftError
from weft.plan.shared import uncollected

if TYPE_CHECKING:  # a cached compile (cache.py) answers without the compiler's modules
    from weft.compiler.diagnostics import Diagnostic


@dataclass
class Compilation:
    files: list[str]
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)
    flows: list[str] = field(default_factory=list)  # flows of the files named, in source order
    plans: dict[str, dict] = field(default_factory=dict)
    extensions: dict[str, list[dict]] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)  # every flow of the program, imported ones too
    # For tools that need more than diagnostics (the editor server): the loaded
    # program, each flow's resolved scope, and the type pass's results.
    program: object = None
    scopes: dict = field(default_factory=dict)
    typing: object = None

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def plan(self, flow: str | None = None) -> dict:
        """The Plan of `flow`, or of the first flow of the files named."""
        if self.has_errors:
            raise WeftError("the flow has errors; run `weft check` to see them")
        if flow is None:
            if not self.flows:
                raise WeftError(f"{', '.join(self.files)} defines no flow")
            flow = self.flows[0]
        if flow not in self.plans:
            from weft.suggest import suggest

            hint = suggest(self.plans, flow)
            raise WeftError(
                f"no flow named '{flow}'"
                + (f"; did you mean '{hint}'?" if hint else f" (flows: {', '.join(self.flows)})")
            )
        return self.plans[flow]


def compile_paths(
    paths: list[str],
    extensions: list[str] = (),
    *,
    sources: dict[str, str] | None = None,
    plans: bool = True,
) -> Compilation:
    """Check (and, when clean and `plans`, compile) the .flow files named."""
    with uncollected():  # compiling allocates many small objects and frees none; collections only cost time
        return _compile(paths, extensions, sources, plans)


def _compile(paths, extensions, sources, plans) -> Compilation:
    from weft.compiler.check import check
    from weft.compiler.diagnostics import Sink
    from weft.compiler.loader import Loader
    from weft.compiler.resolve import resolve
    from weft.compiler.types import typecheck

    sink = Sink()
    loader = Loader(sink, sources)
    files = [os.path.abspath(p) for p in paths]
    for path in files:
        loader.load(path)
    loader.load_extensions(list(extensions))
    program = loader.program
    scopes = resolve(program, sink)
    typing = typecheck(scopes, sink)
    check(program, scopes, sink)
    named = {u.path for u in program.units if u.path in files}
    flows = [n for n, f in program.flows.items() if f.unit.path in named]
    result = Compilation(
        files=files,
        diagnostics=[],
        sources={u.path: u.text for u in program.units},
        flows=flows,
        program=program,
        scopes=scopes,
        typing=typing,
        defined=set(program.flows),
        extensions={
            name: [{"file": e.span.file, "line": e.span.line} for e, _ in exts]
            for name, exts in program.extensions.items()
        },
    )
    if plans and not sink.has_errors:
        result.plans = _build_plans(program, scopes, typing, sink)
    result.diagnostics = sink.sorted()
    return result


def _build_plans(program, scopes, typing, sink) -> dict[str, dict]:
    from weft.compiler.emit import build_plan
    from weft.compiler.limits import MAX_PLAN_DEPTH, plan_nesting
    from weft.compiler.lower import lower
    from weft.compiler.optimize import optimize

    search_path = program.search_path()

    class Context:
        """What optimizer passes may ask for: other flows' graphs, inlined."""

        def __init__(self) -> None:
            self.cache: dict = {}

        def inlined(self, name: str):
            import copy

            from weft.compiler.optimize.inline_calls import inline_calls

            if name not in self.cache:
                self.cache[name] = inline_calls(lower(scopes[name], typing, finish), self)
            return copy.deepcopy(self.cache[name])

    ctx = Context()

    def finish(graph) -> dict:
        return build_plan(optimize(graph, ctx), search_path)

    plans = {}
    for name, scope in scopes.items():
        try:
            plan = finish(lower(scope, typing, finish))
        except RecursionError:  # the limits of each pass hold, but inlining flows adds them up
            plan = None
        if plan is None or plan_nesting(plan) > MAX_PLAN_DEPTH:
            sink.add(
                "E124",
                scope.flow.name_span,
                f"flow '{name}' nests too deep once the flows it calls are put in place",
                "pass simpler arguments to the flows it calls, or run some of them under `each`",
            )
        else:
            plans[name] = plan
    return plans


def unknown_extended(result: Compilation) -> set[str]:
    """Flows that `extend` blocks of the files compiled name but the program lacks (E113)."""
    return {name for name in result.extensions if name not in result.defined}


def compile_extension(
    path: str, host_files: list[str], extensions: list[str] = (), *, sources: dict[str, str] | None = None
) -> Compilation:
    """Check an extension file against the files defining the flows it extends;
    only the extension file's own diagnostics are kept."""
    result = compile_paths(host_files, list(extensions) + [path], sources=sources, plans=False)
    result.diagnostics = [d for d in result.diagnostics if d.span.file == os.path.abspath(path)]
    return result


_FLOW_HEAD = r"^\s*flow\s+({})\s*\("


def find_flow_files(names: set[str], folders: list[str], limit: int = 2000) -> list[str]:
    """.flow files under `folders` that define one of the flows `names` (a text search)."""
    import re

    from weft.compiler.loader import searched

    pattern = re.compile(_FLOW_HEAD.format("|".join(map(re.escape, sorted(names)))), re.M)
    found: list[str] = []
    seen = 0
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if searched(d))
            for name in sorted(files):
                if not name.endswith(".flow"):
                    continue
                seen += 1
                if seen > limit:
                    return found
                path = os.path.join(root, name)
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        if pattern.search(f.read(1 << 20)):
                            found.append(path)
                except OSError:
                    continue
    return found
