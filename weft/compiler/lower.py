"""Lower pass: a checked flow -> a networkx DiGraph.

One node per step, carrying the step's plan fields; data edges labelled with
what they carry (`ip -> value`), control edges for `after`, `sequence` and
phase order. Calls of other flows stay `call` nodes here; the optimizer
inlines them. An `each` body is lowered to a Plan of its own.
"""

from __future__ import annotations

from typing import Callable

import networkx as nx

from weft.plan import expr as px
from weft.plan import types as T
from weft.compiler import ast
from weft.compiler.exprs import constant, field_refs, is_constant, symbol_expr, to_plan
from weft.compiler.resolve import Scope, StepDecl, Symbol
from weft.compiler.types import Typing


def lower(
    scope: Scope, typing: Typing, build_plan: Callable[[nx.DiGraph], dict], secrets: frozenset[str] = frozenset()
) -> nx.DiGraph:
    """The graph of a flow (or an `each` body, whose enclosing scope says which of its
    parameters are `secrets`); `build_plan` turns a body graph into its Plan."""
    if scope.flow is not None:
        secrets = frozenset(p.name for p in scope.flow.params if p.secret)
    g = nx.DiGraph()
    g.graph.update(
        flow=scope.name,
        file=scope.unit.path,
        secrets=secrets,
        params=_params(scope, typing),
        results=_results(scope, typing),
        returns=_returns(scope, typing),
        label=next((to_plan(m.label, scope) for m in scope.metas if m.label is not None), None),
        tags=_tags(scope),
        locks=[to_plan(lock.value, scope) for lock in scope.locks],
        on_error=next((m.on_error[0] for m in scope.metas if m.on_error), "pause"),
        extensions=[{"file": e.span.file, "line": e.span.line, "flow": e.flow} for e in scope.extensions],
        order=list(scope.steps),
    )
    for n, decl in enumerate(scope.steps.values()):
        g.add_node(decl.id, **step_fields(decl, scope, typing, build_plan, secrets), order=n)
    for decl in scope.steps.values():
        connect(g, decl.id)
        for pred in decl.control:
            if pred in g and not g.has_edge(pred, decl.id):
                g.add_edge(pred, decl.id, data=[], control=True)
    return g


def step_fields(
    decl: StepDecl, scope: Scope, typing: Typing, build_plan: Callable, secrets: frozenset[str] = frozenset()
) -> dict:
    node = decl.node
    head = node.head
    fields: dict = {
        "name": node.name,
        "phase": decl.phase,
        "kind": "action",
        "action": None,
        "call": None,
        "inputs": {},
        "outputs": T.to_data(typing.outputs.get(id(decl), T.ANY)),
        "retry": 0,
        "backoff": 0.0,
        "timeout": None,
        "on_error": None,
        "when": None,
        "weight": 1.0,
        "queue": None,
        "concurrency": None,
        "undo": None,
        "each": None,
        "wait": None,
        "origin": {"extension": decl.origin.path, "line": node.span.line} if decl.origin else None,
        "span": {"file": node.span.file, "line": node.span.line, "col": node.span.col},
    }
    if isinstance(head, ast.Call):
        fields["inputs"] = {a.name: to_plan(a.value, scope) for a in head.args}
        if decl.flow is not None:
            fields["kind"] = "call"
            fields["call"] = decl.flow.flow.name
        elif decl.action is not None:
            fields["action"] = _action_ref(decl.action)
    elif isinstance(head, ast.Wait):
        fields["kind"] = "wait"
        fields["wait"] = {"signal": head.signal, "fields": fields["outputs"]}
    else:
        fields["kind"] = "each"
        body = decl.body
        fields["inputs"] = {name: symbol_expr(sym, scope) for name, sym in sorted(body.captures.items())}
        items = to_plan(head.items, scope)
        hidden = frozenset(secret_inputs(fields["inputs"], secrets)) | (
            {head.var} if px.param_refs(items) & secrets else set()
        )
        body_plan = build_plan(lower(body, typing, build_plan, hidden))
        item_type = typing.of(head.items)
        body_plan["params"] = [
            {
                "name": head.var,
                "type": T.to_data(item_type.item if isinstance(item_type, T.ListType) else T.ANY),
                "default": None,
                "secret": head.var in hidden,
            }
        ] + [
            {"name": name, "type": T.to_data(_symbol_type(sym, typing)), "default": None, "secret": name in hidden}
            for name, sym in sorted(body.captures.items())
        ]
        fields["each"] = {
            "var": head.var,
            "items": items,
            "concurrency": _const(head.concurrency, scope, 1),
            "plan": body_plan,
        }
    for clause in node.clauses:
        if clause.kind == "retry":
            fields["retry"] = _const(clause.value, scope, 0)
            fields["backoff"] = float(_const(clause.extra, scope, 0.0))
        elif clause.kind == "concurrency" and decl.action is not None:
            fields["concurrency"] = _const(clause.value, scope, None)
        elif clause.kind in ("timeout", "weight"):
            fields[clause.kind] = float(_const(clause.value, scope, 1.0))
        elif clause.kind in ("when", "queue"):
            fields[clause.kind] = to_plan(clause.value, scope)
        elif clause.kind == "on_error":
            fields["on_error"] = clause.value[0]
        elif clause.kind == "undo" and decl.undo is not None:
            fields["undo"] = {
                "action": _action_ref(decl.undo),
                "inputs": {a.name: to_plan(a.value, scope) for a in clause.value.args},
            }
    if fields["queue"] is None and decl.action is not None and decl.action[1].queue is not None:
        fields["queue"] = ["lit", decl.action[1].queue]  # the action's default: a step's own `queue` wins
    if fields["undo"] is None and decl.action is not None and decl.action[1].undo:
        fields["undo"] = _default_undo(decl, fields["inputs"])
    fields["secret"] = secret_inputs(fields["inputs"], secrets)
    return fields


def secret_inputs(inputs: dict[str, list], secrets: frozenset[str] | set[str]) -> list[str]:
    """The inputs whose value is computed from a secret parameter: they are shown as ***."""
    return sorted(k for k, e in inputs.items() if px.param_refs(e) & secrets) if secrets else []


def connect(g: nx.DiGraph, node: str) -> None:
    """Add the data edges into `node` from the steps its fields read."""
    for ref, field, param in field_refs(g.nodes[node]):
        if ref == node or ref not in g:
            continue
        edge = g.get_edge_data(ref, node)
        if edge is None:
            g.add_edge(ref, node, data=[(field, param)], control=False)
        elif (field, param) not in edge["data"]:
            edge["data"].append((field, param))
            edge["control"] = False


def _symbol_type(sym: Symbol, typing: Typing) -> T.Type:
    if sym.kind == "param":
        return typing.params.get(id(sym.node), T.ANY)
    if sym.kind == "step":
        t = typing.outputs.get(id(sym.node), T.ANY)
        return T.OptType(t) if sym.scope.skip_causes(sym.node) else t
    if sym.kind == "var":
        items = typing.of(sym.node.items)
        return items.item if isinstance(items, T.ListType) else T.ANY
    return typing.of(sym.node.value)


def _action_ref(found) -> dict:
    module, defn = found
    return {"module": module, "name": defn.name, "idempotent": bool(defn.idempotent), "pure": bool(defn.pure)}


def _default_undo(decl: StepDecl, inputs: dict) -> dict | None:
    """An action's declared undo, fed by name from the step's inputs and outputs."""
    from weft.sdk.actions import lookup

    module, defn = decl.action
    try:
        undo = lookup(module, defn.undo)
    except LookupError:
        return None
    outputs = defn.outputs
    args = {}
    for p in undo.params:
        if p.name in inputs:
            args[p.name] = inputs[p.name]
        elif isinstance(outputs, T.RecordType) and outputs.get(p.name) is not None:
            args[p.name] = ["step", decl.id, p.name]
    return {"action": _action_ref((module, undo)), "inputs": args}


def _const(e: ast.Expr | None, scope: Scope, default):
    """A step option's constant value (check.py reports options that are not constant)."""
    if e is None:
        return default
    value = constant(to_plan(e, scope))
    ok = is_constant(value) and isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if ok else default


def _params(scope: Scope, typing: Typing) -> list[dict]:
    if scope.flow is None:
        return []
    return [
        {
            "name": p.name,
            "type": T.to_data(typing.params.get(id(p), T.ANY)),
            "default": None if p.default is None else to_plan(p.default, scope),
            "secret": p.secret,
        }
        for p in scope.flow.params
    ]


def _returns(scope: Scope, typing: Typing) -> dict[str, list]:
    """What a run of this graph gives back: its `return`, or (an `each` body) the result of the flow it ends by calling."""
    call = scope.result_call
    if call is not None:
        declared = typing.results.get(call.flow.flow.name)
        return {f.name: ["step", call.id, f.name] for f in (declared.fields if declared else ())}
    return {a.name: to_plan(a.value, scope) for r in scope.returns[:1] for a in r.fields}


def _results(scope: Scope, typing: Typing) -> list[dict]:
    declared = typing.results.get(scope.name) if scope.flow is not None else None
    if declared is None:
        return []
    return [{"name": f.name, "type": T.to_data(f.type)} for f in declared.fields]


def _tags(scope: Scope) -> list[str]:
    for m in scope.metas:
        if m.tags is not None and isinstance(m.tags, ast.ListLit):
            return [x.value for x in m.tags.items if isinstance(x, ast.Literal) and isinstance(x.value, str)]
    return []
