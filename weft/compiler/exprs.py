"""AST expressions -> the Plan's expression form (see weft/expr.py).

A `let` is inlined where it is used; a name an `each` body takes from an
enclosing scope becomes a parameter of the body's plan.
"""

from __future__ import annotations

from weft import expr as px
from weft.compiler import ast
from weft.compiler.resolve import Scope, Symbol

_NOT_CONSTANT = object()


def to_plan(e: ast.Expr, scope: Scope, _lets: frozenset[str] = frozenset()) -> list:
    if isinstance(e, ast.Literal):
        return ["lit", e.value]
    if isinstance(e, ast.Invalid):
        return ["lit", None]
    if isinstance(e, ast.Interp):
        return ["fmt", [p if isinstance(p, str) else to_plan(p, scope, _lets) for p in e.parts]]
    if isinstance(e, ast.Name):
        return _name(e, scope, _lets)
    if isinstance(e, ast.Attr):
        obj = to_plan(e.obj, scope, _lets)
        if obj[0] == "step" and obj[2] is None:
            return ["step", obj[1], e.name]
        return ["get", obj, e.name]
    if isinstance(e, ast.Index):
        return ["idx", to_plan(e.obj, scope, _lets), to_plan(e.index, scope, _lets)]
    if isinstance(e, ast.ListLit):
        return ["list", [to_plan(x, scope, _lets) for x in e.items]]
    if isinstance(e, ast.RecordLit):
        return ["rec", [[a.name, to_plan(a.value, scope, _lets)] for a in e.fields]]
    if isinstance(e, ast.Binary):
        left, right = to_plan(e.left, scope, _lets), to_plan(e.right, scope, _lets)
        return [e.op, left, right] if e.op in ("and", "or") else ["op", e.op, left, right]
    if isinstance(e, ast.Unary):
        return ["not" if e.op == "not" else "neg", to_plan(e.operand, scope, _lets)]
    raise TypeError(f"not an expression: {e!r}")


def _name(e: ast.Name, scope: Scope, lets: frozenset[str]) -> list:
    sym: Symbol | None = scope.refs.get(id(e))
    if sym is None:
        return ["lit", None]  # undefined: reported by resolve
    if sym.scope is not scope or sym.kind in ("param", "var"):
        return ["param", sym.name]
    if sym.kind == "step":
        return ["step", sym.node.id, None]
    if sym.name in lets:  # a let that refers to itself: reported as a cycle
        return ["lit", None]
    return to_plan(sym.node.value, scope, lets | {sym.name})


def constant(e: list) -> object:
    """The value of a plan expression that reads nothing, else _NOT_CONSTANT."""
    try:
        return px.evaluate(e, px.Env())
    except (px.Unresolved, px.EvalError):
        return _NOT_CONSTANT


def is_constant(value: object) -> bool:
    return value is not _NOT_CONSTANT
