"""Check pass: what needs the whole flow: cycles, recursion, step options, lints."""

from __future__ import annotations

import math

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.exprs import constant, data_refs, is_constant, to_plan
from weft.compiler.graphs import one_cycle, strongly_connected
from weft.compiler.limits import (
    MAX_CALL_DEPTH,
    MAX_CONCURRENCY,
    MAX_DURATION,
    MAX_PLAN_STEPS,
    MAX_RETRY,
    MAX_WEIGHT,
)
from weft.compiler.loader import Program
from weft.compiler.resolve import Scope, StepDecl
from weft.compiler.skips import skip_safety
from weft.plan.expr import param_refs

POLICIES = ("pause", "skip", "fail", "rollback")


def check(program: Program, scopes: dict[str, Scope], sink: Sink) -> None:
    for scope in scopes.values():
        _check_scope(scope, sink)
        skip_safety(scope, sink)
        _secrets(scope, sink)
        for m in scope.metas:
            if m.on_error:
                _policy(m.on_error, sink)
    _recursion(scopes, sink)
    _unused_uses(program, sink)


def _check_scope(scope: Scope, sink: Sink) -> None:
    for decl in scope.steps.values():
        _options(decl, scope, sink)
        if decl.body is not None:
            _check_scope(decl.body, sink)
    _cycles(scope, sink)
    _rollback_without_undo(scope, sink)
    for sym in scope.symbols.values():
        if sym.name in scope.used or sym.name.startswith("_"):
            continue
        if sym.kind == "let":
            sink.add("W201", sym.span, f"let '{sym.name}' is never used")
        elif sym.kind == "param":
            sink.add("W202", sym.span, f"parameter '{sym.name}' of flow '{scope.name}' is never used")


def _secrets(scope: Scope, sink: Sink) -> None:
    """A secret parameter is a str with no default, and names no lock or label: a lock name or a
    label is stored and listed as it is, and a default would be in the flow text (E125)."""
    if scope.flow is None:
        return
    secret = set()
    for p in scope.flow.params:
        if not p.secret:
            continue
        secret.add(p.name)
        t = p.type
        if not (isinstance(t, ast.TypeName) and t.name == "str" and not t.args):
            sink.add("E125", t.span, f"secret parameter '{p.name}' must be a str", "write it `secret str`")
        if p.default is not None:
            sink.add(
                "E125",
                p.default.span,
                f"secret parameter '{p.name}' cannot have a default: its value would be in the flow text",
                "pass it when the run starts: weft run FILE -i NAME=VALUE",
            )
    if not secret:
        return
    for what, e in [("label", m.label) for m in scope.metas] + [("lock", lock.value) for lock in scope.locks]:
        read = sorted(param_refs(to_plan(e, scope)) & secret) if e is not None else []
        if read:
            sink.add(
                "E125",
                e.span,
                f"a {what} cannot read secret parameter '{read[0]}': {what}s are stored and listed in clear",
            )


def _options(decl: StepDecl, scope: Scope, sink: Sink) -> None:
    node = decl.node
    if isinstance(node.head, ast.Each) and node.head.concurrency is not None:
        _number(node.head.concurrency, scope, sink, "concurrency", 1, MAX_CONCURRENCY, integer=True)
    for clause in node.clauses:
        if clause.kind == "retry":
            _number(clause.value, scope, sink, "retry", 0, MAX_RETRY, integer=True)
            if clause.extra is not None:
                _number(clause.extra, scope, sink, "backoff", 0, MAX_DURATION, duration=True)
        elif clause.kind == "timeout":
            _number(clause.value, scope, sink, "timeout", 0, MAX_DURATION, strict=True, duration=True)
        elif clause.kind == "weight":
            _number(clause.value, scope, sink, "weight", 0, MAX_WEIGHT, strict=True)
        elif clause.kind == "on_error":
            _policy(clause.value, sink)
        elif clause.kind == "queue":
            _action_only(decl, clause, sink)
        elif clause.kind == "concurrency":
            if _action_only(decl, clause, sink):
                _number(clause.value, scope, sink, "concurrency", 1, MAX_CONCURRENCY, integer=True)
        elif clause.kind == "when":
            value = constant(to_plan(clause.value, scope))
            if is_constant(value):
                word = "true" if value else "false"
                effect = "the condition can be removed" if value else "the step never runs"
                sink.add("W204", clause.value.span, f"this `when` is always {word}: {effect}")
    kinds = [c.kind for c in node.clauses]
    for kind in set(kinds):
        if kinds.count(kind) > 1 and kind != "after":
            dup = [c for c in node.clauses if c.kind == kind][1]
            sink.add("E119", dup.span, f"'{kind.replace('_', ' ')}' is given twice for this step")


def _action_only(decl: StepDecl, clause: ast.Clause, sink: Sink) -> bool:
    """A `queue` routes one action call and a step's `concurrency` bounds its calls; a wait, an `each` or a
    call of a flow makes none itself (E119). Whether the step calls an action."""
    head = decl.node.head
    if isinstance(head, ast.Call) and decl.flow is None:
        return True
    what = {ast.Wait: "a `wait`", ast.Each: "an `each`"}.get(type(head)) or f"a call of flow '{head.target[0]}'"
    hint = None if isinstance(head, ast.Wait) else f"give the `{clause.kind}` to the action steps it runs"
    if isinstance(head, ast.Each) and clause.kind == "concurrency":
        hint = "to bound its sub-runs, write it before the block: `each x in xs concurrency N { ... }`"
    sink.add("E119", clause.span, f"`{clause.kind}` applies to a step that calls an action, not to {what}", hint)
    return False


def _number(
    e: ast.Expr,
    scope: Scope,
    sink: Sink,
    what: str,
    minimum: float,
    maximum: float,
    integer=False,
    strict=False,
    duration=False,
) -> None:
    if isinstance(e, ast.Invalid):
        return  # an unreadable literal, reported by the parser
    value = constant(to_plan(e, scope))
    if not is_constant(value) or not isinstance(value, (int, float)) or isinstance(value, bool):
        sink.add("E119", e.span, f"{what} must be a constant number")
        return
    if integer and not isinstance(value, int):
        sink.add("E119", e.span, f"{what} must be a whole number, not {value}")
    elif value < minimum or (strict and value == minimum):
        sink.add("E119", e.span, f"{what} must be {'more than' if strict else 'at least'} {minimum}, not {value}")
    elif not value <= maximum:  # `not <=` also catches nan
        if duration:
            limit, given = _duration(maximum), _duration(value)
        else:
            limit, given = f"{maximum:,}", f"{value:,}" if isinstance(value, int) else f"{value:g}"
        sink.add("E123", e.span, f"{what} must be at most {limit}, not {given}")


def _duration(seconds: float) -> str:
    """A number of seconds in the largest unit that reads well (for messages)."""
    if not math.isfinite(seconds):
        return "infinity"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:,.6g}{unit}" if seconds % size else f"{int(seconds // size):,}{unit}"
    return f"{seconds:g}s"


def _policy(value: tuple[str, ast.Span], sink: Sink) -> None:
    policy, span = value
    if policy not in POLICIES:
        sink.misspelt(
            "E119", span, f"unknown error policy '{policy}'; use one of {', '.join(POLICIES)}", policy, POLICIES
        )


def _cycles(scope: Scope, sink: Sink) -> None:
    edges: dict[str, list[str]] = {d.id: [] for d in scope.steps.values()}
    for decl in scope.steps.values():
        for ref, _field, _param in data_refs(decl, scope):
            if ref in edges:
                edges[ref].append(decl.id)
        for pred in decl.control:
            if pred in edges:
                edges[pred].append(decl.id)
    for component in strongly_connected(edges):
        first = next(d for d in scope.steps.values() if d.id in component)
        sink.add(
            "E110",
            first.span,
            f"steps depend on each other in a cycle: {' -> '.join(one_cycle(edges, first.id, component))}",
            "a step cannot (indirectly) wait for itself; remove an `after` or a reference",
        )


def _rollback_without_undo(scope: Scope, sink: Sink) -> None:
    flow_policy = next((m.on_error[0] for m in scope.metas if m.on_error), None)
    bare = [
        d.id
        for d in scope.steps.values()
        if d.phase == "run"
        and d.action is not None
        and d.node.clause("undo") is None
        and not d.action[1].undo
        and not d.action[1].pure
    ]
    if not bare:
        return
    if flow_policy == "rollback":
        meta = next(m for m in scope.metas if m.on_error)
        sink.add("W203", meta.on_error[1], _cannot_undo(bare))
    for decl in scope.steps.values():
        clause = decl.node.clause("on_error")
        if clause is not None and clause.value[0] == "rollback":
            sink.add("W203", clause.span, _cannot_undo(bare))


def _cannot_undo(ids: list[str]) -> str:
    verb = "it has" if len(ids) == 1 else "they have"
    return f"rollback cannot undo {_names(ids)}: {verb} no `undo`"


def _names(ids: list[str]) -> str:
    shown = ", ".join(f"'{i}'" for i in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _recursion(scopes: dict[str, Scope], sink: Sink) -> None:
    calls: dict[str, list[str]] = {name: [] for name in scopes}  # a callee once per call
    sites: dict[tuple[str, str], ast.Span] = {}
    own = dict.fromkeys(scopes, 0)  # steps that are not calls, `each` bodies included

    def visit(owner: str, scope: Scope) -> None:
        for decl in scope.steps.values():
            if decl.flow is not None:
                callee = decl.flow.flow.name
                calls[owner].append(callee)
                sites.setdefault((owner, callee), decl.node.head.target_span)
            else:
                own[owner] += 1
            if decl.body is not None:
                visit(owner, decl.body)

    for name, scope in scopes.items():
        visit(name, scope)
    cycles = strongly_connected(calls)
    for component in cycles:
        cycle = one_cycle(calls, min(component), component)
        sink.add(
            "E120",
            sites[(cycle[0], cycle[1])],
            f"flows call each other in a cycle: {' -> '.join(cycle)}",
            "flows are inlined, so a flow cannot call itself",
        )
    if not cycles:
        _inlining_limits(calls, sites, own, sink)


def _inlining_limits(
    calls: dict[str, list[str]], sites: dict[tuple[str, str], ast.Span], own: dict[str, int], sink: Sink
) -> None:
    """E124 where flows inlined into their callers nest past MAX_CALL_DEPTH, or make a plan
    of more than MAX_PLAN_STEPS steps (flows that call a flow twice double it at each level; a flow that calls
    none has the steps written in it, however many).
    The call graph has no cycle; callees are visited first, iteratively."""
    depth: dict[str, int] = {}
    steps: dict[str, int] = {}
    for root in calls:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in depth:
                stack.pop()
                continue
            pending = [c for c in calls[name] if c not in depth]
            if pending:
                stack += pending
                continue
            depth[name] = 1 + max((depth[c] for c in calls[name]), default=0)
            steps[name] = own[name] + sum(steps[c] for c in calls[name])
            hint = "flows are inlined into their callers; run the inner part under `each` or as a flow of its own"
            if depth[name] == MAX_CALL_DEPTH + 1:  # reported once, where the limit is crossed
                deepest = max(calls[name], key=lambda c: depth[c])
                message = f"flow '{name}' starts a chain of more than {MAX_CALL_DEPTH} flows calling each other"
                sink.add("E124", sites[(name, deepest)], message, hint)
            elif calls[name] and steps[name] > MAX_PLAN_STEPS and all(steps[c] <= MAX_PLAN_STEPS for c in calls[name]):
                biggest = max(calls[name], key=lambda c: steps[c])
                message = f"flow '{name}' grows past {MAX_PLAN_STEPS:,} steps once the flows it calls are put in place"
                sink.add("E124", sites[(name, biggest)], message, hint)


def _unused_uses(program: Program, sink: Sink) -> None:
    """W205 for a `use` whose alias no call of its file names, read from the file's own
    text: an extension block that did not apply (E113) still calls what it uses."""
    applied = {u.path for exts in program.extensions.values() for _, u in exts}
    for unit in program.units:
        if unit.extension and unit.path not in applied and not unit.module.of(ast.Flow):
            continue  # it extends only flows this program lacks, so it does not apply
        called = _aliases_called(
            [s for item in unit.module.items if isinstance(item, (ast.Flow, ast.Extend)) for s in item.body]
        )
        for use in unit.module.of(ast.Use):
            if use.alias not in called and unit.aliases.get(use.alias) is not None:
                sink.add("W205", use.span, f"module '{use.module}' is bound to '{use.alias}' but never called")


def _aliases_called(body: list) -> set[str]:
    """The module aliases that the action calls of some statements name (nested blocks too)."""
    called: set[str] = set()
    stack = list(body)
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, ast.Block):
            stack += stmt.body
        elif isinstance(stmt, ast.Step):
            heads = [stmt.head] + [c.value for c in stmt.clauses if c.kind == "undo"]
            called |= {h.target[0] for h in heads if isinstance(h, ast.Call) and len(h.target) > 1}
            if isinstance(stmt.head, ast.Each):
                stack += stmt.head.body
    return called
