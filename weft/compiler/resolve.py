"""Resolve pass: give every step an id, bind every name and call target.

For each flow it builds a Scope: the flow's parameters, lets and steps (its
own and those its extensions add), the steps' phases and control order, and
for every `Name` in an expression the symbol it refers to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from weft.sdk.actions import ActionDef, module_actions, resolve_path
from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.graphs import strongly_connected
from weft.compiler.limits import MAX_EXPR_DEPTH, MAX_LET_NODES
from weft.compiler.loader import FlowDef, Program, Unit


@dataclass(eq=False)
class StepDecl:
    id: str
    node: ast.Step
    phase: str  # run, finalize, success, failure
    unit: Unit  # the file whose `use` aliases the step's calls see
    origin: Unit | None = None  # the extension that added it
    control: list[str] = field(default_factory=list)  # ids it runs after without data
    action: tuple[str, ActionDef] | None = None
    flow: FlowDef | None = None
    undo: tuple[str, ActionDef] | None = None
    body: "Scope | None" = None  # the body of an `each`

    @property
    def span(self) -> ast.Span:
        return self.node.name_span or self.node.head.span


@dataclass(eq=False)
class Symbol:
    kind: str  # param, let, step, var
    name: str
    node: object  # ast.Param, ast.Let, StepDecl, or ast.Each for a loop variable
    span: ast.Span
    scope: "Scope"


@dataclass(eq=False)
class Scope:
    """A flow, or the body of an `each` (which sees its parent's names)."""

    name: str
    unit: Unit
    flow: ast.Flow | None = None
    parent: "Scope | None" = None
    symbols: dict[str, Symbol] = field(default_factory=dict)
    steps: dict[str, StepDecl] = field(default_factory=dict)
    refs: dict[int, Symbol] = field(default_factory=dict)
    captures: dict[str, Symbol] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    metas: list[ast.Meta] = field(default_factory=list)
    locks: list[ast.Lock] = field(default_factory=list)
    returns: list[ast.Return] = field(default_factory=list)
    extensions: list[ast.Extend] = field(default_factory=list)
    reserved: set[str] = field(default_factory=set)  # step names written in the flow
    plan_exprs: dict[int, list] = field(default_factory=dict)  # memo of exprs.to_plan
    suffixes: dict[tuple[str, str], int] = field(default_factory=dict)  # where _free_id goes on
    ends_with: StepDecl | None = None  # an `each` body's last statement, when it is a step

    @property
    def result_call(self) -> StepDecl | None:
        """The flow call that ends an `each` body with no `return`: the body's result is that flow's."""
        last = self.ends_with
        return last if last is not None and not self.returns and last.flow is not None else None

    def skip_causes(self, decl: StepDecl) -> list[str]:
        """Why step `decl` of this scope may be skipped: "when" (its condition is false), "on error skip"."""
        causes = ["when"] if decl.node.clause("when") is not None else []
        clause = decl.node.clause("on_error")
        policy = clause.value[0] if clause else next((m.on_error[0] for m in self.metas if m.on_error), None)
        return causes + ["on error skip"] if policy == "skip" else causes

    def lookup(self, name: str) -> Symbol | None:
        sym = self.symbols.get(name)
        if sym is None and self.parent is not None:
            sym = self.parent.lookup(name)
            if sym is not None:
                self.captures[name] = sym
        return sym

    def visible(self) -> list[str]:
        return list(self.symbols) + (self.parent.visible() if self.parent else [])


def resolve(program: Program, sink: Sink) -> dict[str, Scope]:
    """Scopes of every flow in the program, keyed by flow name."""
    scopes = {}
    for name, fdef in program.flows.items():
        scope = Scope(name, fdef.unit, fdef.flow)
        _Resolver(program, sink).flow(scope, fdef, program.extensions.get(name, []))
        scopes[name] = scope
    for flow_name, exts in program.extensions.items():
        if flow_name not in program.flows:
            for ext, _unit in exts:
                sink.misspelt(
                    "E113", ext.name_span, f"cannot extend '{flow_name}': no such flow", flow_name, program.flows
                )
    return scopes


class _Resolver:
    def __init__(self, program: Program, sink: Sink) -> None:
        self.program, self.sink = program, sink
        self.origin: Unit | None = None  # the extension whose step is being bound

    def flow(self, scope: Scope, fdef: FlowDef, extensions: list[tuple[ast.Extend, Unit]]) -> None:
        scope.reserved = _step_names(fdef.flow.body) | {n for ext, _ in extensions for n in _step_names(ext.body)}
        for p in fdef.flow.params:
            self.declare(scope, Symbol("param", p.name, p, p.span, scope))
        self.collect(scope, fdef.flow.body, "run", fdef.unit, None, top=True)
        for ext, unit in extensions:
            scope.extensions.append(ext)
            self.collect(scope, ext.body, "run", unit, unit, top=False, extension=True)
        self.bind(scope)

    # -- declarations -------------------------------------------------------------

    def declare(self, scope: Scope, sym: Symbol) -> None:
        prior = scope.symbols.get(sym.name)
        if prior is not None:
            self.sink.add(
                "E109",
                sym.span,
                f"'{sym.name}' is already defined as a {prior.kind} at {prior.span.seen_from(sym.span.file)}",
            )
            return
        scope.symbols[sym.name] = sym

    def collect(
        self,
        scope: Scope,
        body: tuple,
        phase: str,
        unit: Unit,
        origin: Unit | None,
        *,
        top: bool,
        sequential: bool = False,
        extension: bool = False,
        each_top: bool = False,
    ) -> list[StepDecl]:
        """Declare the steps and lets of a block (`each_top`: of an `each` body, which may `return`);
        return its steps in order."""
        steps: list[StepDecl] = []
        for stmt in body:
            if isinstance(stmt, ast.Step):
                decl = StepDecl("", stmt, phase, unit, origin)
                self.add_step(scope, decl)
                if stmt.name:
                    self.declare(scope, Symbol("step", stmt.name, decl, stmt.name_span, scope))
                if sequential and steps:
                    decl.control.append(steps[-1].id)
                if isinstance(stmt.head, ast.Each):
                    each = stmt.head
                    decl.body = Scope(f"{scope.name}.{decl.id}", unit, None, scope, reserved=_step_names(each.body))
                    self.declare(decl.body, Symbol("var", each.var, each, each.var_span, decl.body))
                    inner = self.collect(decl.body, each.body, "run", unit, origin, top=False, each_top=True)
                    if each.body and isinstance(each.body[-1], ast.Step):
                        decl.body.ends_with = inner[-1]
                steps.append(decl)
            elif isinstance(stmt, ast.Let):
                self.declare(scope, Symbol("let", stmt.name, stmt, stmt.name_span, scope))
            elif isinstance(stmt, ast.Block):
                if stmt.kind != "sequence" and (phase != "run" or not (top or extension)):
                    self.misplaced(stmt.span, f"'{_block_word(stmt.kind)}'", "at the top level of a flow")
                    continue
                inner_phase = phase if stmt.kind == "sequence" else stmt.kind
                inner = self.collect(scope, stmt.body, inner_phase, unit, origin, top=False, sequential=True)
                if sequential and steps and inner:
                    inner[0].control.append(steps[-1].id)
                if stmt.kind == "sequence":
                    steps += inner
            elif isinstance(stmt, (ast.Meta, ast.Lock, ast.Return)):
                if not top and not (each_top and isinstance(stmt, ast.Return)):
                    word = {ast.Meta: "'meta'", ast.Lock: "'lock'", ast.Return: "'return'"}[type(stmt)]
                    where = "or of an `each` body " if isinstance(stmt, ast.Return) else ""
                    self.misplaced(stmt.span, word, f"at the top level of a flow {where}(not in a block or extension)")
                    continue
                {ast.Meta: scope.metas, ast.Lock: scope.locks, ast.Return: scope.returns}[type(stmt)].append(stmt)
        return steps

    def misplaced(self, span: ast.Span, what: str, where: str) -> None:
        self.sink.add("E122", span, f"{what} is only allowed {where}")

    def add_step(self, scope: Scope, decl: StepDecl) -> None:
        node = decl.node
        if node.name:
            decl.id = node.name
        else:
            head = node.head
            base = {ast.Call: lambda: head.target[-1], ast.Wait: lambda: head.signal, ast.Each: lambda: "each"}[
                type(head)
            ]()
            decl.id = _free_id(scope, base, lambda i: i in scope.steps or i in scope.reserved)
        # A duplicate name, reported by declare(), is still checked, under an id of its own.
        decl.id = _free_id(scope, decl.id, lambda i: i in scope.steps, "duplicate")
        scope.steps[decl.id] = decl

    # -- binding ------------------------------------------------------------------

    def bind(self, scope: Scope) -> None:
        for sym in list(scope.symbols.values()):
            if sym.kind == "param" and sym.node.default is not None:
                self.expr(scope, sym.node.default)
            elif sym.kind == "let":
                self.expr(scope, sym.node.value)
        for decl in scope.steps.values():
            saved, self.origin = self.origin, decl.origin
            self.step(scope, decl)
            self.origin = saved
        for m in scope.metas:
            for e in (m.label, m.tags):
                if e is not None:
                    self.expr(scope, e)
        for lock in scope.locks:
            self.expr(scope, lock.value)
        for ret in scope.returns:
            for arg in ret.fields:
                self.expr(scope, arg.value)
        _limit_lets(scope, self.sink)

    def step(self, scope: Scope, decl: StepDecl) -> None:
        head = decl.node.head
        if isinstance(head, ast.Call):
            self.call(scope, decl, head, undo=False)
        elif isinstance(head, ast.Each):
            self.expr(scope, head.items)
            if head.concurrency is not None:
                self.expr(scope, head.concurrency)
            self.bind(decl.body)
        for clause in decl.node.clauses:
            if clause.kind == "undo":
                self.call(scope, decl, clause.value, undo=True)
            elif clause.kind == "after":
                self.after(scope, decl, clause)
            elif clause.kind != "on_error":  # the policy is checked by check.py
                for e in (clause.value, clause.extra):
                    if e is not None:
                        self.expr(scope, e)

    def after(self, scope: Scope, decl: StepDecl, clause: ast.Clause) -> None:
        for name, span in clause.value:
            sym = scope.symbols.get(name)
            if sym is not None and sym.kind == "step":
                decl.control.append(sym.node.id)
                continue
            code = "E114" if decl.origin else "E101"
            where = f"flow '{_root(scope).name}'"
            steps = [s for s, v in scope.symbols.items() if v.kind == "step"]
            what = f"'{name}' is a {sym.kind}, not a step" if sym else f"{where} has no step '{name}'"
            self.sink.misspelt(code, span, what, name, steps)

    def call(self, scope: Scope, decl: StepDecl, call: ast.Call, undo: bool) -> None:
        for arg in call.args:
            self.expr(scope, arg.value)
        if len(call.target) == 1 and not undo:
            name = call.target[0]
            fdef = self.program.flows.get(name)
            if fdef is None:
                self.sink.misspelt(
                    "E103",
                    call.target_span,
                    f"no flow named '{name}'",
                    name,
                    self.program.flows,
                    "actions are called through a `use` alias: alias.action(...)",
                )
            decl.flow = fdef
            return
        found = self.action(decl.unit, call)
        if undo:
            decl.undo = found
        else:
            decl.action = found

    def action(self, unit: Unit, call: ast.Call) -> tuple[str, ActionDef] | None:
        alias, path = call.target[0], list(call.target[1:])
        if alias not in unit.aliases:
            t = call.target_span
            self.sink.misspelt(
                "E104",
                ast.Span(t.file, t.line, t.col, t.line, t.col + len(alias)),
                f"no module is bound to '{alias}'",
                alias,
                unit.aliases,
                f"add `use some.python.module as {alias}` at the top of the file",
            )
            return None
        module = unit.aliases[alias]
        if module is None or not path:
            return None  # the failed import is reported at its `use`
        found = resolve_path(module, path)
        if found is None:
            names = module_actions(module)
            self.sink.misspelt(
                "E102",
                call.target_span,
                f"module '{module.__name__}' has no action '{'.'.join(path)}'",
                path[-1],
                names,
                prefix=f"{alias}.",
            )
        return found

    def expr(self, scope: Scope, e: ast.Expr) -> None:
        if isinstance(e, ast.Name):
            sym = scope.lookup(e.name)
            if sym is None:
                extended = f"flow '{_root(scope).name}' has no step or value '{e.name}'"
                self.sink.misspelt(
                    "E114" if self.origin else "E101",
                    e.span,
                    extended if self.origin else f"'{e.name}' is not defined",
                    e.name,
                    scope.visible(),
                )
                return
            scope.refs[id(e)] = sym
            sym.scope.used.add(sym.name)
            return
        for child in children(e):
            self.expr(scope, child)


def _free_id(scope: Scope, base: str, taken, kind: str = "unnamed") -> str:
    """`base`, or the first of `base_2`, `base_3`... that is not `taken`. Ids are only ever
    added, so the search resumes where the last one for `base` ended: thousands of
    steps of one action stay linear."""
    n = scope.suffixes.get((kind, base), 1)
    found = base if n == 1 else f"{base}_{n}"
    while taken(found):
        n += 1
        found = f"{base}_{n}"
    scope.suffixes[(kind, base)] = n
    return found


def _limit_lets(scope: Scope, sink: Sink) -> None:
    """A let is put in place wherever it is read. Cut (its value made Invalid) each let
    that depends on itself (E110), or that nests deeper than MAX_EXPR_DEPTH or grows past
    MAX_LET_NODES once the lets it reads are put in place (E124), so that no later pass
    recurses or copies without bound. Lets are visited in dependency order, iteratively."""
    lets = {n: s for n, s in scope.symbols.items() if s.kind == "let"}
    reads = {n: _lets_read(sym.node.value, scope) for n, sym in lets.items()}
    measured: dict[str, tuple[int, int]] = {}  # let -> (depth, nodes) once put in place
    too_big: set[str] = set()
    for component in strongly_connected(reads):
        first = next(n for n in lets if n in component)
        sink.add("E110", lets[first].node.name_span, f"let '{first}' depends on itself")
        for name in component:
            _cut(lets[name])
            measured[name] = (0, 1)
    for root in lets:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in measured:
                stack.pop()
                continue
            pending = [m for m in reads[name] if m not in measured]
            if pending:
                stack += pending
                continue
            depth, nodes = _measure(lets[name].node.value, scope, measured)
            if any(m in too_big for m in reads[name]):  # reported at the let it reads
                too_big.add(name)
                _cut(lets[name])
            elif depth > MAX_EXPR_DEPTH or nodes > MAX_LET_NODES:
                too_big.add(name)
                if depth > MAX_EXPR_DEPTH:
                    what = f"nests more than {MAX_EXPR_DEPTH} levels deep"
                else:
                    what = f"grows past {MAX_LET_NODES:,} expression parts"
                sink.add(
                    "E124",
                    lets[name].node.name_span,
                    f"let '{name}' {what} once the lets it reads are put in place",
                    "compute it in an action, or read fewer lets from each other",
                )
                _cut(lets[name])
                depth, nodes = 0, 1
            measured[name] = (depth, nodes)


def _lets_read(e: ast.Expr, scope: Scope) -> list[str]:
    """The lets of `scope` that an expression reads by name."""
    found, stack = [], [e]
    while stack:
        e = stack.pop()
        sym = scope.refs.get(id(e)) if isinstance(e, ast.Name) else None
        if sym is not None and sym.kind == "let" and sym.scope is scope:
            found.append(sym.name)
        stack += children(e)
    return found


def _measure(e: ast.Expr, scope: Scope, lets: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(depth, nodes) of an expression with the lets it reads put in place (its own
    depth is bounded by the parser, so recursing over it is safe). Reading a let is a
    level too: the passes that put it in place recurse once per let, however plain."""
    sym = scope.refs.get(id(e)) if isinstance(e, ast.Name) else None
    if sym is not None and sym.kind == "let" and sym.scope is scope:
        depth, nodes = lets[sym.name]
        return depth + 1, nodes
    depth, nodes = 0, 1
    for child in children(e):
        d, n = _measure(child, scope, lets)
        depth, nodes = max(depth, d + 1), nodes + n
    return depth, nodes


def _cut(sym: Symbol) -> None:
    sym.node = dataclasses.replace(sym.node, value=ast.Invalid("", sym.node.value.span))


def children(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.Interp):
        return [p for p in e.parts if not isinstance(p, str)]
    if isinstance(e, (ast.Attr,)):
        return [e.obj]
    if isinstance(e, ast.Index):
        return [e.obj, e.index]
    if isinstance(e, ast.ListLit):
        return list(e.items)
    if isinstance(e, ast.RecordLit):
        return [a.value for a in e.fields]
    if isinstance(e, ast.Binary):
        return [e.left, e.right]
    if isinstance(e, ast.Unary):
        return [e.operand]
    return []


def _step_names(body: tuple) -> set[str]:
    """Names of the steps written in a block and its nested blocks (not `each` bodies)."""
    names: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.Step) and stmt.name:
            names.add(stmt.name)
        elif isinstance(stmt, ast.Block):
            names |= _step_names(stmt.body)
    return names


def _root(scope: Scope) -> Scope:
    while scope.parent is not None:
        scope = scope.parent
    return scope


def _block_word(kind: str) -> str:
    return {"finalize": "finalize", "success": "on success", "failure": "on failure"}.get(kind, kind)
