"""What is at a position of a compiled file: names, calls, fields, arguments.

An Index walks the resolved scopes of a Compilation once and records an
Occurrence for every name written in one file, with what it refers to.
Hover, definition and completion ask it; none of them re-resolve anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from weft.plan import types as T
from weft.sdk.actions import ActionDef
from weft.compiler import Compilation, ast
from weft.compiler.loader import FlowDef
from weft.compiler.resolve import Scope, StepDecl, Symbol, children


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A name in the text and what it means.

    kind and target:
      symbol  a Symbol (param, let, step, each variable), used or declared
      flow    a FlowDef, called or declared
      action  an Action
      field   the ast.Attr whose field name this is
      arg     an Argument of a call
      import  the absolute path an `import` names
    """

    kind: str
    span: ast.Span
    target: object


@dataclass(frozen=True, slots=True)
class Action:
    """An action a call names."""

    written: str  # as the call writes it: proxy.dhcp_reserve
    module: str  # the Python module that defines it
    defn: ActionDef


@dataclass(frozen=True, slots=True)
class Argument:
    """A named argument of a call to a known flow or action, and the type it takes."""

    name: str
    type: T.Type
    callee: FlowDef | Action


class Index:
    """The occurrences of one file of a Compilation, by line."""

    def __init__(self, comp: Compilation, path: str) -> None:
        self.comp, self.path = comp, path
        self.by_line: dict[int, list[Occurrence]] = {}
        self.unit = next((u for u in comp.program.units if u.path == path), None)
        # The text regions whose names a scope resolves: flows, and `extend` blocks (their host's scope).
        self.regions: list[tuple[ast.Span, Scope]] = [
            (s.flow.span, s) for s in comp.scopes.values() if s.unit.path == path
        ]
        for scope in comp.scopes.values():
            self._flow(scope)
        for item in self.unit.module.items if self.unit else ():
            if isinstance(item, ast.Import):
                self._add("import", item.span, os.path.abspath(os.path.join(os.path.dirname(path), item.path)))
            elif isinstance(item, ast.Extend) and item.flow in comp.scopes:
                self.regions.append((item.span, comp.scopes[item.flow]))

    # -- queries ------------------------------------------------------------------

    def at(self, line: int, col: int) -> Occurrence | None:
        """The narrowest occurrence under a 1-based position (or just before it)."""
        found = [o for o in self.by_line.get(line, ()) if o.span.col <= col <= o.span.end_col]
        inside = [o for o in found if col < o.span.end_col] or found
        return min(inside, key=lambda o: o.span.end_col - o.span.col, default=None)

    def scope_at(self, line: int, col: int) -> Scope | None:
        """The flow (or `each` body) around a position; else the one that begins last above it."""
        around = [s for span, s in self.regions if _contains(span, line, col)]
        if not around:
            above = [(span.line, s) for span, s in self.regions if span.line <= line]
            return max(above, key=lambda a: a[0], default=(0, None))[1]
        scope = around[0]
        while True:
            inner = next(
                (d.body for d in scope.steps.values() if d.body is not None and _contains(d.node.head.span, line, col)),
                None,
            )
            if inner is None:
                return scope
            scope = inner

    def symbol_type(self, sym: Symbol) -> T.Type:
        typing = self.comp.typing
        if sym.kind == "param":
            return typing.params.get(id(sym.node), T.ANY)
        if sym.kind == "step":
            return typing.outputs.get(id(sym.node), T.ANY)
        if sym.kind == "let":
            return typing.exprs.get(id(sym.node.value), T.ANY)
        items = typing.exprs.get(id(sym.node.items), T.ANY)
        return items.item if isinstance(items, T.ListType) else T.ANY

    # -- building -----------------------------------------------------------------

    def _add(self, kind: str, span: ast.Span | None, target: object) -> None:
        if span is not None and span.file == self.path:
            self.by_line.setdefault(span.line, []).append(Occurrence(kind, span, target))

    def _flow(self, scope: Scope) -> None:
        fdef = self.comp.program.flows.get(scope.name)
        if fdef is not None:
            self._add("flow", scope.flow.name_span, fdef)
        self._scope(scope)

    def _scope(self, scope: Scope) -> None:
        for sym in scope.symbols.values():
            self._add("symbol", declared_span(sym), sym)
            if sym.kind == "param" and sym.node.default is not None:
                self._expr(scope, sym.node.default)
            elif sym.kind == "let":
                self._expr(scope, sym.node.value)
        for decl in scope.steps.values():
            self._step(scope, decl)
        exprs = [e for m in scope.metas for e in (m.label, m.tags) if e is not None]
        exprs += [lock.value for lock in scope.locks] + [a.value for r in scope.returns for a in r.fields]
        for e in exprs:
            self._expr(scope, e)

    def _step(self, scope: Scope, decl: StepDecl) -> None:
        head = decl.node.head
        if isinstance(head, ast.Call):
            self._call(scope, head, decl.flow, decl.action)
        elif isinstance(head, ast.Each):
            self._expr(scope, head.items)
            if head.concurrency is not None:
                self._expr(scope, head.concurrency)
            self._scope(decl.body)
        for clause in decl.node.clauses:
            if clause.kind == "undo":
                self._call(scope, clause.value, None, decl.undo)
            elif clause.kind == "after":
                for name, span in clause.value:
                    sym = scope.symbols.get(name)
                    if sym is not None and sym.kind == "step":
                        self._add("symbol", span, sym)
            elif clause.kind != "on_error":
                for e in (clause.value, clause.extra):
                    if e is not None:
                        self._expr(scope, e)

    def _call(self, scope: Scope, call: ast.Call, flow: FlowDef | None, action) -> None:
        params: dict[str, T.Type] = {}
        callee: FlowDef | Action | None = None
        if flow is not None:
            callee = flow
            params = {p.name: self.comp.typing.params.get(id(p), T.ANY) for p in flow.flow.params}
        elif action is not None:
            callee = Action(".".join(call.target), action[0], action[1])
            params = {p.name: p.type for p in action[1].params}
        if callee is not None:
            self._add("flow" if flow is not None else "action", call.target_span, callee)
        for arg in call.args:
            if arg.name in params:
                self._add("arg", arg.name_span, Argument(arg.name, params[arg.name], callee))
            self._expr(scope, arg.value)

    def _expr(self, scope: Scope, e: ast.Expr) -> None:
        if isinstance(e, ast.Name):
            sym = scope.refs.get(id(e))
            if sym is not None:
                self._add("symbol", e.span, sym)
        elif isinstance(e, ast.Attr):
            self._add("field", e.name_span, e)
        for child in children(e):
            self._expr(scope, child)


def declared_span(sym: Symbol) -> ast.Span:
    """The span of a symbol's name where it is declared (a param's span covers its type too)."""
    s = sym.span
    if sym.kind == "param":
        return ast.Span(s.file, s.line, s.col, s.line, s.col + len(sym.name))
    return s


def lookup(scope: Scope | None, name: str) -> Symbol | None:
    """A name visible in a scope (its own, then its parents'), without touching the scope."""
    while scope is not None:
        if name in scope.symbols:
            return scope.symbols[name]
        scope = scope.parent
    return None


def _contains(span: ast.Span, line: int, col: int) -> bool:
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)
