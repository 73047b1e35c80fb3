"""AST expressions -> the Plan's expression form (see weft/plan/expr.py).

A `let` is inlined where it is used; a name an `each` body takes from an
enclosing scope becomes a parameter of the body's plan.
"""

from __future__ import annotations

from weft.plan import expr as px
from weft.compiler import ast
from weft.compiler.resolve import Scope, StepDecl, Symbol

_NOT_CONSTANT = object()


def to_plan(e: ast.Expr, scope: Scope) -> list:
    """The plan form of `e` as read in `scope` (memoized per scope, so a let read twice
    is one shared list; never mutate it). Resolve cut the lets that read themselves."""
    found = scope.plan_exprs.get(id(e))
    if found is None:
        found = scope.plan_exprs[id(e)] = _to_plan(e, scope)
    return found


def _to_plan(e: ast.Expr, scope: Scope) -> list:
    if isinstance(e, ast.Literal):
        return ["lit", e.value]
    if isinstance(e, ast.Invalid):
        return ["lit", None]
    if isinstance(e, ast.Interp):
        return ["fmt", [p if isinstance(p, str) else to_plan(p, scope) for p in e.parts]]
    if isinstance(e, ast.Name):
        return _name(e, scope)
    if isinstance(e, ast.Attr):
        obj = to_plan(e.obj, scope)
        if obj[0] == "step" and obj[2] is None:
            return ["step", obj[1], e.name]
        return ["get", obj, e.name]
    if isinstance(e, ast.Index):
        obj = to_plan(e.obj, scope)
        if obj[0] == "step" and obj[2] is None and isinstance(e.index, ast.Literal) and isinstance(e.index.value, str):
            return ["step", obj[1], e.index.value]  # n["Content-Type"]: a field like n.ip
        return ["idx", obj, to_plan(e.index, scope)]
    if isinstance(e, ast.ListLit):
        return ["list", [to_plan(x, scope) for x in e.items]]
    if isinstance(e, ast.RecordLit):
        return ["rec", [[a.name, to_plan(a.value, scope)] for a in e.fields]]
    if isinstance(e, ast.Binary):
        left, right = to_plan(e.left, scope), to_plan(e.right, scope)
        if e.op == "??":
            return ["dflt", left, right]
        return [e.op, left, right] if e.op in ("and", "or") else ["op", e.op, left, right]
    if isinstance(e, ast.Unary):
        return [{"not": "not", "-": "neg", "?": "opt"}[e.op], to_plan(e.operand, scope)]
    raise TypeError(f"not an expression: {e!r}")


def _name(e: ast.Name, scope: Scope) -> list:
    sym: Symbol | None = scope.refs.get(id(e))
    if sym is None:
        return ["lit", None]  # undefined: reported by resolve
    if sym.scope is not scope or sym.kind in ("param", "var"):
        return ["param", sym.name]
    if sym.kind == "step":
        return ["step", sym.node.id, None]
    return to_plan(sym.node.value, scope)


def constant(e: list) -> object:
    """The value of a plan expression that reads nothing, else _NOT_CONSTANT."""
    try:
        return px.evaluate(e, px.Env())
    except (px.Unresolved, px.EvalError):
        return _NOT_CONSTANT


def is_constant(value: object) -> bool:
    return value is not _NOT_CONSTANT


def symbol_expr(sym: Symbol, scope: Scope) -> list:
    """How `scope` reads a symbol that a nested `each` body captures (a step that may be skipped
    as optional: its sub-runs get none, which `??` and `?` in the body read as absent)."""
    if sym.scope is not scope or sym.kind in ("param", "var"):
        return ["param", sym.name]
    if sym.kind == "step":
        read = ["step", sym.node.id, None]
        return ["opt", read] if scope.skip_causes(sym.node) else read
    return to_plan(sym.node.value, scope)


def data_refs(decl: StepDecl, scope: Scope) -> list[tuple[str, str | None, str]]:
    """(step id, field, what it feeds) for every step output a step reads before it runs."""
    head = decl.node.head
    fields: dict = {"inputs": {}, "when": None, "each": None}
    if isinstance(head, ast.Call):
        fields["inputs"] = {a.name: to_plan(a.value, scope) for a in head.args}
    elif isinstance(head, ast.Each):
        fields["inputs"] = {name: symbol_expr(sym, scope) for name, sym in decl.body.captures.items()}
        fields["each"] = {"var": head.var, "items": to_plan(head.items, scope)}
    for kind in ("when", "queue"):
        clause = decl.node.clause(kind)
        if clause is not None:
            fields[kind] = to_plan(clause.value, scope)
    return field_refs(fields)


def field_refs(fields: dict) -> list[tuple[str, str | None, str]]:
    """(step id, field, what it feeds) read by a step's plan fields before it runs."""
    found: list[tuple[str, str | None, str]] = []

    def walk(e: list, into: str) -> None:
        if e[0] == "step":
            found.append((e[1], e[2], into))
        for c in px.children(e):
            walk(c, into)

    for name, e in fields["inputs"].items():
        walk(e, name)
    if fields.get("each"):
        walk(fields["each"]["items"], fields["each"]["var"])
    for kind in ("when", "queue"):
        if fields.get(kind) is not None:
            walk(fields[kind], kind)
    return found
