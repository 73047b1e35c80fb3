"""Weft's own expression evaluator over the Plan's expression form.

Expressions in a Plan are msgpack-safe nested lists (see docs/plan-format.md):

    ["lit", v]            a constant
    ["param", name]       a flow parameter
    ["step", id, field]   a field of a step's outputs (field None: the whole record)
    ["fmt", parts]        string interpolation; parts are str or expressions
    ["list", items]       ["rec", [[key, expr], ...]]
    ["get", e, field]     ["idx", e, index_expr]
    ["op", op, a, b]      + - * / % == != < <= > >=
    ["and", a, b]  ["or", a, b]  ["not", a]  ["neg", a]
    ["dflt", e, d]        `e ?? d`: e, or d when e is absent or none
    ["opt", e]            `e?`: e, or none when e is absent

A value is *absent* when it is not there to read: the outputs of a step
that was skipped (or did not run), a field or key a record lacks, a field
of none. Reading one raises Absent, which `??` and `?` turn into their
default; anywhere else it is an error like any other.

The compiler folds constant expressions with the same evaluator the runtime
uses, so a value means one thing at compile time and at run time. Flow text
never reaches Python's own evaluator.
"""

from __future__ import annotations

import json
import operator
from typing import Any, Callable, Iterator

Expr = list


class EvalError(Exception):
    """An expression could not be evaluated (bad operand, missing field...)."""


class Absent(EvalError):
    """A value that is not there: a skipped step's outputs, a missing field or key, a field of none."""


class Unresolved(Exception):
    """A reference whose value is not known (yet): used by constant folding."""


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _arith(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if op == "+" and isinstance(a, list) and isinstance(b, list):
            return a + b
        if not (_num(a) and _num(b)):
            raise EvalError(f"cannot apply '{op}' to {type_name(a)} and {type_name(b)}")
        if op in "/%" and b == 0:
            raise EvalError("division by zero")
        return fn(a, b)

    return apply


def _compare(op: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if (_num(a) and _num(b)) or (type(a) is type(b) and isinstance(a, str)):
            return fn(a, b)
        raise EvalError(f"cannot compare {type_name(a)} and {type_name(b)} with '{op}'")

    return apply


def _divide(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _arith("+", operator.add),
    "-": _arith("-", operator.sub),
    "*": _arith("*", operator.mul),
    "/": _arith("/", _divide),
    "%": _arith("%", operator.mod),
    "==": operator.eq,
    "!=": operator.ne,
    "<": _compare("<", operator.lt),
    "<=": _compare("<=", operator.le),
    ">": _compare(">", operator.gt),
    ">=": _compare(">=", operator.ge),
}


def type_name(v: Any) -> str:
    """The Weft name of a runtime value's type, for error messages."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "record"
    return type(v).__name__


def show(v: Any) -> str:
    """How a value reads inside an interpolated string."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, sort_keys=True, default=str)


def truthy(v: Any) -> bool:
    """Conditions must be booleans: Weft has no implicit truthiness."""
    if not isinstance(v, bool):
        raise EvalError(f"condition is {type_name(v)}, not bool")
    return v


class Env:
    """Where references get their values. Subclass or pass callables."""

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        outputs: Callable[[str], dict[str, Any]] | dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.params = params or {}
        self._outputs = outputs or {}

    def param(self, name: str) -> Any:
        if name not in self.params:
            raise Unresolved(name)
        return self.params[name]

    def step(self, step_id: str) -> dict[str, Any]:
        if callable(self._outputs):
            return self._outputs(step_id)
        if step_id not in self._outputs:
            raise Unresolved(step_id)
        return self._outputs[step_id]


def evaluate(e: Expr, env: Env) -> Any:
    """Evaluate a Plan expression; raise EvalError on a bad operation."""
    tag = e[0]
    if tag == "lit":
        return e[1]
    if tag == "param":
        return env.param(e[1])
    if tag == "step":
        out = env.step(e[1])
        return out if e[2] is None else _field(out, e[2])
    if tag == "fmt":
        return "".join(p if isinstance(p, str) else show(evaluate(p, env)) for p in e[1])
    if tag == "list":
        return [evaluate(x, env) for x in e[1]]
    if tag == "rec":
        return {k: evaluate(x, env) for k, x in e[1]}
    if tag == "get":
        return _field(evaluate(e[1], env), e[2])
    if tag == "idx":
        return _index(evaluate(e[1], env), evaluate(e[2], env))
    if tag == "op":
        return BINARY[e[1]](evaluate(e[2], env), evaluate(e[3], env))
    if tag == "and":
        return truthy(evaluate(e[1], env)) and truthy(evaluate(e[2], env))
    if tag == "or":
        return truthy(evaluate(e[1], env)) or truthy(evaluate(e[2], env))
    if tag == "not":
        return not truthy(evaluate(e[1], env))
    if tag == "dflt":
        try:
            v = evaluate(e[1], env)
        except Absent:
            v = None
        return evaluate(e[2], env) if v is None else v
    if tag == "opt":
        try:
            return evaluate(e[1], env)
        except Absent:
            return None
    if tag == "neg":
        v = evaluate(e[1], env)
        if not _num(v):
            raise EvalError(f"cannot negate {type_name(v)}")
        return -v
    raise EvalError(f"unknown expression form {tag!r}")


def _field(v: Any, name: str) -> Any:
    if v is None:
        raise Absent(f"cannot read field '{name}' of none")
    if not isinstance(v, dict):
        raise EvalError(f"cannot read field '{name}' of {type_name(v)}")
    if name not in v:
        raise Absent(f"no field '{name}' (has: {', '.join(sorted(v)) or 'none'})")
    return v[name]


def _index(v: Any, i: Any) -> Any:
    if isinstance(v, list):
        if not isinstance(i, int) or isinstance(i, bool):
            raise EvalError(f"list index must be int, not {type_name(i)}")
        if not -len(v) <= i < len(v):
            raise EvalError(f"index {i} out of range for a list of {len(v)}")
        return v[i]
    if isinstance(v, dict):
        if not isinstance(i, str):
            raise EvalError(f"record key must be str, not {type_name(i)}")
        return _field(v, i)
    if v is None:
        raise Absent("cannot index none")
    raise EvalError(f"cannot index {type_name(v)}")


def children(e: Expr) -> Iterator[Expr]:
    """The direct sub-expressions of an expression."""
    tag = e[0]
    if tag == "fmt":
        yield from (p for p in e[1] if not isinstance(p, str))
    elif tag == "list":
        yield from e[1]
    elif tag == "rec":
        yield from (x for _, x in e[1])
    elif tag in ("get", "not", "neg", "opt"):
        yield e[1]
    elif tag in ("idx", "and", "or", "dflt"):
        yield e[1]
        yield e[2]
    elif tag == "op":
        yield e[2]
        yield e[3]


def map_children(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """A copy of `e` with `f` applied to each direct sub-expression."""
    tag = e[0]
    if tag == "fmt":
        return ["fmt", [p if isinstance(p, str) else f(p) for p in e[1]]]
    if tag == "list":
        return ["list", [f(x) for x in e[1]]]
    if tag == "rec":
        return ["rec", [[k, f(x)] for k, x in e[1]]]
    if tag == "get":
        return ["get", f(e[1]), e[2]]
    if tag == "op":
        return ["op", e[1], f(e[2]), f(e[3])]
    if tag in ("idx", "and", "or", "not", "neg", "dflt", "opt"):
        return [tag, *(f(c) for c in children(e))]
    return e


def step_refs(e: Expr) -> set[str]:
    """Ids of the steps whose outputs an expression reads."""
    if e[0] == "step":
        return {e[1]}
    refs: set[str] = set()
    for c in children(e):
        refs |= step_refs(c)
    return refs


def param_refs(e: Expr) -> set[str]:
    """Names of the parameters an expression reads."""
    if e[0] == "param":
        return {e[1]}
    refs: set[str] = set()
    for c in children(e):
        refs |= param_refs(c)
    return refs
