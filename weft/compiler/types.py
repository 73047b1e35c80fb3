"""Type pass: the type of every expression, checked where it is used.

Flow parameters and results come from their annotations; step outputs from
the action's type hints (or the called flow's results, or a `wait`'s fields);
`let` values from their expressions. Calls are checked argument by argument.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from weft.plan import types as T
from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.resolve import Scope, StepDecl, Symbol

EACH_OUTPUTS = T.record(total=T.INT, succeeded=T.INT, failed=T.INT)


def each_outputs(result: T.RecordType | None) -> T.RecordType:
    """An `each` step's outputs: the counts, and `results` (one per item, none for an item that did
    not succeed) when its body has a result."""
    if result is None:
        return EACH_OUTPUTS
    return T.RecordType(EACH_OUTPUTS.fields + (T.Field("results", T.ListType(T.OptType(result))),))


_ARITH = {"+", "-", "*", "/", "%"}
_NAMED = {"str": T.STR, "int": T.INT, "float": T.FLOAT, "bool": T.BOOL, "any": T.ANY, "none": T.NONE}


@dataclass
class Typing:
    """What the type pass learned, keyed by the id() of AST nodes and step decls."""

    exprs: dict[int, T.Type] = field(default_factory=dict)
    params: dict[int, T.Type] = field(default_factory=dict)
    results: dict[str, T.RecordType | None] = field(default_factory=dict)
    outputs: dict[int, T.Type] = field(default_factory=dict)
    each_results: dict[int, T.RecordType | None] = field(default_factory=dict)  # an each body's result

    def of(self, e: ast.Expr) -> T.Type:
        return self.exprs.get(id(e), T.ANY)


def typecheck(scopes: dict[str, Scope], sink: Sink) -> Typing:
    typing = Typing()
    checker = _Checker(scopes, typing, sink)
    for scope in scopes.values():
        checker.signature(scope)
    for scope in scopes.values():
        checker.scope(scope)
    return typing


def type_of_annotation(t: ast.TypeExpr, sink: Sink | None) -> T.Type:
    """A written type (`list[(name: str)]`, `str?`) as a Weft type."""
    if isinstance(t, ast.TypeOpt):
        return T.OptType(type_of_annotation(t.inner, sink))
    if isinstance(t, ast.TypeRecord):
        return T.RecordType(tuple(T.Field(f.name, type_of_annotation(f.type, sink), not f.optional) for f in t.fields))
    args = [type_of_annotation(a, sink) for a in t.args]
    if t.name in _NAMED and not args:
        return _NAMED[t.name]
    if t.name == "list" and len(args) == 1:
        return T.ListType(args[0])
    if t.name == "dict" and len(args) == 2 and args[0] == T.STR:
        return T.DictType(args[1])
    if sink is not None:
        if t.name in ("list", "dict"):
            message = f"'{t.name}' needs its item type: list[T] or dict[str, T]"
        else:
            message = f"unknown type '{t.name}'"
        known = [n for n in list(_NAMED) + ["list", "dict"] if n != t.name]
        s = t.span  # the name alone, which is what a fix replaces
        sink.misspelt("E118", ast.Span(s.file, s.line, s.col, s.line, s.col + len(t.name)), message, t.name, known)
    return T.ANY


class _Checker:
    def __init__(self, scopes: dict[str, Scope], typing: Typing, sink: Sink) -> None:
        self.scopes, self.typing, self.sink = scopes, typing, sink

    # -- signatures -------------------------------------------------------------

    def signature(self, scope: Scope) -> None:
        flow = scope.flow
        for p in flow.params:
            self.typing.params[id(p)] = type_of_annotation(p.type, self.sink)
        if flow.results is None:
            self.typing.results[flow.name] = None
            return
        seen: set[str] = set()
        for f in flow.results:
            if f.name in seen:
                self.sink.add("E109", f.span, f"result field '{f.name}' is declared twice")
            seen.add(f.name)
        self.typing.results[flow.name] = type_of_annotation(ast.TypeRecord(flow.results, flow.span), self.sink)

    # -- bodies -------------------------------------------------------------------

    def scope(self, scope: Scope) -> None:
        for sym in scope.symbols.values():
            if sym.kind == "param" and sym.node.default is not None:
                want = self.typing.params[id(sym.node)]
                self.expect(scope, sym.node.default, want, f"the default of '{sym.name}'")
            elif sym.kind == "let":
                self.symbol_type(sym)
        for decl in scope.steps.values():
            self.step(scope, decl)
        for m in scope.metas:
            if m.label is not None and not T.assignable(self.expr(scope, m.label), T.STR):
                self.sink.add("E116", m.label.span, f"a label must be a string, not {self.typing.of(m.label)}")
            if m.tags is not None:
                self.tags(scope, m.tags)
        for lock in scope.locks:
            if not T.assignable(self.expr(scope, lock.value), T.STR):
                self.sink.add(
                    "E115", lock.value.span, f"a lock name must be a string, not {self.typing.of(lock.value)}"
                )
        if scope.flow is not None:
            self.returns(scope)
        for ret in scope.returns[1:]:
            if scope.flow is None:
                self.sink.add("E112", ret.span, "this `each` body returns twice")
        for ret in scope.returns[:1]:
            self.once(ret.fields, "result")

    def once(self, fields: tuple[ast.Arg, ...], what: str) -> None:
        """E109 for a key given twice in a record or a `return`."""
        seen: set[str] = set()
        for a in fields:
            if a.name in seen:
                self.sink.add("E109", a.name_span, f"{what} '{a.name}' is given twice")
            seen.add(a.name)

    def tags(self, scope: Scope, tags: ast.Expr) -> None:
        t = self.expr(scope, tags)
        items = tags.items if isinstance(tags, ast.ListLit) else ()
        bad = [x for x in items if not T.assignable(self.typing.of(x), T.STR)]
        if not T.assignable(t, T.ListType(T.STR)) or bad:
            where = bad[0].span if bad else tags.span
            what = f"this tag is {self.typing.of(bad[0])}" if bad else f"this is {t}"
            self.sink.add("E116", where, f"tags must be a list of strings, but {what}")

    def returns(self, scope: Scope) -> None:
        flow = scope.flow
        declared = self.typing.results.get(flow.name)
        if declared is None:
            for ret in scope.returns:
                fields = ", ".join(T.key_text(a.name) + ": ..." for a in ret.fields)
                self.sink.add(
                    "E112",
                    ret.span,
                    f"flow '{flow.name}' declares no result, so it cannot return one",
                    f"declare it: flow {flow.name}(...) -> ({fields})",
                )
            return
        if not scope.returns:
            self.sink.add(
                "E112", flow.name_span, f"flow '{flow.name}' declares a result {declared} but never returns it"
            )
            return
        for ret in scope.returns[1:]:
            self.sink.add("E112", ret.span, f"flow '{flow.name}' returns twice")
        ret = scope.returns[0]
        given = {a.name: a for a in ret.fields}
        for f in declared.fields:
            if f.name not in given and f.required:
                self.sink.add(
                    "E112", ret.span, f"return is missing '{f.name}' ({f.type}) declared by flow '{flow.name}'"
                )
        for arg in ret.fields:
            want = declared.get(arg.name)
            if want is None:
                self.sink.misspelt(
                    "E112",
                    arg.name_span,
                    f"flow '{flow.name}' declares no result '{arg.name}'",
                    arg.name,
                    declared.names(),
                    f"declared: {declared}",
                )
                self.expr(scope, arg.value)
                continue
            got = self.expr(scope, arg.value)
            if not T.assignable(got, want.type):
                self.sink.add(
                    "E112", arg.value.span, f"result '{arg.name}' is declared {want.type} but the value is {got}"
                )

    def step(self, scope: Scope, decl: StepDecl) -> None:
        head = decl.node.head
        self.step_outputs(decl)
        if isinstance(head, ast.Call):
            params = self.call_params(decl)
            self.args(scope, head, params, _target_name(decl, head))
        elif isinstance(head, ast.Each):
            items = self.expr(scope, head.items)
            if not isinstance(items, T.ListType) and items != T.ANY:
                self.sink.add("E111", head.items.span, f"each needs a list, but this is {items}")
            if head.concurrency is not None:
                self.expect(scope, head.concurrency, T.INT, "concurrency")
            self.scope(decl.body)
        elif isinstance(head, ast.Wait):
            seen: set[str] = set()
            for f in head.fields:
                if f.name in seen:
                    self.sink.add("E109", f.span, f"signal field '{f.name}' is declared twice")
                seen.add(f.name)
        for clause in decl.node.clauses:
            if clause.kind == "undo":
                params = _action_params(decl.undo)
                self.args(scope, clause.value, params, ".".join(clause.value.target))
            elif clause.kind == "when":
                self.expect(scope, clause.value, T.BOOL, "a `when` condition")
            elif clause.kind in ("retry", "weight", "concurrency"):
                self.expect(scope, clause.value, T.FLOAT if clause.kind == "weight" else T.INT, clause.kind)
                if clause.extra is not None:
                    self.expect(scope, clause.extra, T.FLOAT, "backoff")
            elif clause.kind in ("timeout", "queue"):
                self.expect(scope, clause.value, T.FLOAT if clause.kind == "timeout" else T.STR, clause.kind)

    def call_params(self, decl: StepDecl) -> list[tuple[str, T.Type, bool]] | None:
        if decl.flow is not None:
            return [(p.name, self.typing.params.get(id(p), T.ANY), p.default is None) for p in decl.flow.flow.params]
        return _action_params(decl.action)

    def args(self, scope: Scope, call: ast.Call, params: list | None, target: str) -> None:
        if params is None:  # unknown target: reported already; still type the arguments
            for arg in call.args:
                self.expr(scope, arg.value)
            return
        by_name = {name: (t, required) for name, t, required in params}
        seen: dict[str, ast.Arg] = {}
        for arg in call.args:
            got = self.expr(scope, arg.value)
            if arg.name in seen:
                self.sink.add("E109", arg.name_span, f"argument '{arg.name}' is given twice")
                continue
            seen[arg.name] = arg
            if arg.name not in by_name:
                self.sink.misspelt(
                    "E105",
                    arg.name_span,
                    f"{target} takes no argument '{arg.name}'",
                    arg.name,
                    [n for n in by_name if n not in seen],
                    f"it takes: {', '.join(by_name) or 'no arguments'}",
                )
                continue
            want = by_name[arg.name][0]
            if not T.assignable(got, want):
                self.sink.add(
                    "E107",
                    arg.value.span,
                    f"argument '{arg.name}' of {target} expects {want}, but this is {got}",
                )
        missing = [f"'{n}' ({t})" for n, (t, required) in by_name.items() if required and n not in seen]
        if missing:
            self.sink.add(
                "E106",
                call.target_span,
                f"{target} is missing required argument{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            )

    # -- expressions ------------------------------------------------------------

    def expect(self, scope: Scope, e: ast.Expr, want: T.Type, what: str) -> None:
        got = self.expr(scope, e)
        if not T.assignable(got, want):
            self.sink.add("E107", e.span, f"{what} must be {want}, but this is {got}")

    def typed(self, scope: Scope, e: ast.Expr) -> T.Type:
        """The type of `e`, typed once however often it is asked for."""
        known = self.typing.exprs.get(id(e))
        return known if known is not None else self.expr(scope, e)

    def expr(self, scope: Scope, e: ast.Expr) -> T.Type:
        t = self._expr(scope, e)
        self.typing.exprs[id(e)] = t
        return t

    def _expr(self, scope: Scope, e: ast.Expr) -> T.Type:
        if isinstance(e, ast.Literal):
            return _literal_type(e.value)
        if isinstance(e, ast.Invalid):
            return T.ANY
        if isinstance(e, ast.Interp):
            for p in e.parts:
                if not isinstance(p, str):
                    self.expr(scope, p)
            return T.STR
        if isinstance(e, ast.Name):
            sym = scope.refs.get(id(e))
            return T.ANY if sym is None else self.symbol_type(sym)
        if isinstance(e, ast.Attr):
            return self.attr(scope, e)
        if isinstance(e, ast.Index):
            return self.index(scope, e)
        if isinstance(e, ast.ListLit):
            item: T.Type | None = None
            for x in e.items:
                t = self.expr(scope, x)
                item = t if item is None else T.join(item, t)
            return T.ListType(item or T.ANY)
        if isinstance(e, ast.RecordLit):
            self.once(e.fields, "field")
            return T.RecordType(tuple(T.Field(a.name, self.expr(scope, a.value)) for a in e.fields))
        if isinstance(e, ast.Unary) and e.op == "?":
            return _optional(self.expr(scope, e.operand))
        if isinstance(e, ast.Unary):
            t = self.expr(scope, e.operand)
            want = T.BOOL if e.op == "not" else T.FLOAT
            if not T.assignable(t, want):
                self.sink.add("E107", e.span, f"cannot apply '{e.op}' to {t}")
                return T.ANY
            return T.BOOL if e.op == "not" else t
        return self.binary(scope, e)

    def binary(self, scope: Scope, e: ast.Binary) -> T.Type:
        a, b = self.expr(scope, e.left), self.expr(scope, e.right)
        if e.op == "??":
            return self.default(e, a, b)
        if T.ANY in (a, b):
            return T.BOOL if e.op not in _ARITH else T.ANY
        if e.op in ("and", "or"):
            ok, result = a == T.BOOL and b == T.BOOL, T.BOOL
        elif e.op in ("==", "!="):
            ok, result = T.assignable(a, b) or T.assignable(b, a), T.BOOL
        elif e.op in ("<", "<=", ">", ">="):
            ok = (_numeric(a) and _numeric(b)) or (a == b == T.STR)
            result = T.BOOL
        elif e.op == "+" and a == b and (a == T.STR or isinstance(a, T.ListType)):
            ok, result = True, a
        elif e.op == "+" and isinstance(a, T.ListType) and isinstance(b, T.ListType):
            ok, result = True, T.ListType(T.join(a.item, b.item))
        else:
            ok = _numeric(a) and _numeric(b)
            result = T.INT if a == b == T.INT and e.op != "/" else T.FLOAT
        if not ok:
            self.sink.add("E107", e.span, f"cannot apply '{e.op}' to {a} and {b}")
            return T.ANY
        return result

    def default(self, e: ast.Binary, a: T.Type, b: T.Type) -> T.Type:
        """`a ?? b`: the value's type without its `?`, or the default's; `?` stays if the default may be none."""
        inner = a.inner if isinstance(a, T.OptType) else a
        if inner == T.NONE:
            return b
        if T.ANY in (inner, b) or T.assignable(b, inner):
            return inner
        if T.assignable(b, T.OptType(inner)):
            return T.OptType(inner)
        self.sink.add("E107", e.right.span, f"the default after '??' is {b}, but the value is {inner}")
        return T.ANY

    def attr(self, scope: Scope, e: ast.Attr) -> T.Type:
        obj = self.expr(scope, e.obj)
        inner = obj.inner if isinstance(obj, T.OptType) else obj
        t = T.field_type(inner, e.name)
        if t is not None:
            return _optional(t) if inner is not obj else t
        if e.name == "results" and self._is_each(scope, e.obj):
            self.sink.add(
                "E108",
                e.name_span,
                f"{_describe_obj(scope, e.obj)} has no field 'results': its `each` body has no result",
                "end the body with `return (...)`, or with a call of a flow that returns a result",
            )
            return T.ANY
        return self.missing_field(scope, e.obj, inner, obj, e.name, e.name_span)

    def _is_each(self, scope: Scope, e: ast.Expr) -> bool:
        sym = scope.refs.get(id(e)) if isinstance(e, ast.Name) else None
        return sym is not None and sym.kind == "step" and isinstance(sym.node.node.head, ast.Each)

    def missing_field(
        self, scope: Scope, owner: ast.Expr, inner: T.Type, obj: T.Type, name: str, span: ast.Span, quoted=False
    ) -> T.Type:
        """E108 for `owner.name` (or `owner["name"]`, `quoted`), with the closest field as the fix."""
        if isinstance(inner, T.RecordType):
            spell = json.dumps if quoted else str
            self.sink.misspelt(
                "E108",
                span,
                f"{_describe_obj(scope, owner)} has no field {json.dumps(name) if quoted else repr(name)}",
                spell(name),
                [spell(n) for n in inner.names()],
                f"it has: {', '.join(inner.names()) or 'no fields'}",
            )
        else:
            self.sink.add("E108", span, f"cannot read field '{name}' of {T.a(obj)}")
        return T.ANY

    def index(self, scope: Scope, e: ast.Index) -> T.Type:
        whole, idx = self.expr(scope, e.obj), self.expr(scope, e.index)
        obj = whole.inner if isinstance(whole, T.OptType) else whole
        if obj == T.ANY:
            return T.ANY
        t: T.Type | None = None
        if isinstance(obj, T.ListType) and T.assignable(idx, T.INT):
            t = obj.item
        elif isinstance(obj, T.DictType) and T.assignable(idx, T.STR):
            t = obj.value
        elif isinstance(obj, T.RecordType) and T.assignable(idx, T.STR):
            key = e.index.value if isinstance(e.index, ast.Literal) and isinstance(e.index.value, str) else None
            if key is None:  # a key known only at run time: any field's type
                t = functools.reduce(T.join, [f.type for f in obj.fields]) if obj.fields else T.ANY
            else:
                t = T.field_type(obj, key)
                if t is None:
                    return self.missing_field(scope, e.obj, obj, whole, key, e.index.span, quoted=True)
        if t is None:
            self.sink.add("E107", e.span, f"cannot index {T.a(whole)} with {T.a(idx)}")
            return T.ANY
        return _optional(t) if obj is not whole else t

    # -- symbols ------------------------------------------------------------------

    def symbol_type(self, sym: Symbol) -> T.Type:
        if sym.kind == "param":
            return self.typing.params.get(id(sym.node), T.ANY)
        if sym.kind == "step":
            return self.step_outputs(sym.node)
        if sym.kind == "var":
            items = self.typing.exprs.get(id(sym.node.items))
            if items is None:
                items = self.expr(sym.scope.parent, sym.node.items)
            return items.item if isinstance(items, T.ListType) else T.ANY
        let: ast.Let = sym.node  # resolve cut the lets that depend on themselves
        if id(let.value) in self.typing.exprs:
            return self.typing.exprs[id(let.value)]
        return self.expr(sym.scope, let.value)

    def step_outputs(self, decl: StepDecl) -> T.Type:
        known = self.typing.outputs.get(id(decl))
        if known is not None:
            return known
        head = decl.node.head
        if isinstance(head, ast.Wait):
            t: T.Type = type_of_annotation(ast.TypeRecord(head.fields, head.span), None)
        elif isinstance(head, ast.Each):
            t = each_outputs(self.body_result(decl))
        elif decl.flow is not None:
            t = self.typing.results.get(decl.flow.flow.name) or T.EMPTY
        elif decl.action is not None:
            defn = decl.action[1]
            t = T.ANY if getattr(defn, "open_outputs", False) else defn.outputs
        else:
            t = T.ANY
        self.typing.outputs[id(decl)] = t
        return t

    def body_result(self, decl: StepDecl) -> T.RecordType | None:
        """What one item of an `each` body gives back: its `return`, or the result of the flow it ends by
        calling; None when it gives nothing (or a record of no fields)."""
        if id(decl) in self.typing.each_results:
            return self.typing.each_results[id(decl)]
        body = decl.body
        t: T.RecordType | None = None
        if body.returns:
            t = T.RecordType(tuple(T.Field(a.name, self.typed(body, a.value)) for a in body.returns[0].fields))
        elif body.result_call is not None:
            t = self.typing.results.get(body.result_call.flow.flow.name)
        t = t if t is not None and t.fields else None
        self.typing.each_results[id(decl)] = t
        return t


def _optional(t: T.Type) -> T.Type:
    """`t?`: what reading a part of an optional value gives."""
    return t if t in (T.ANY, T.NONE) or isinstance(t, T.OptType) else T.OptType(t)


def _action_params(found) -> list[tuple[str, T.Type, bool]] | None:
    if found is None:
        return None
    return [(p.name, p.type, p.required) for p in found[1].params]


def _target_name(decl: StepDecl, call: ast.Call) -> str:
    return f"flow '{call.target[0]}'" if decl.flow is not None else ".".join(call.target)


def _describe_obj(scope: Scope, e: ast.Expr) -> str:
    if isinstance(e, ast.Name):
        sym = scope.refs.get(id(e))
        if sym is not None and sym.kind == "step":
            return f"the output of step '{sym.name}'"
        if sym is not None:
            return f"{sym.kind} '{sym.name}'"
    return "this record"


def _literal_type(v: object) -> T.Type:
    if v is None:
        return T.NONE
    return {bool: T.BOOL, int: T.INT, float: T.FLOAT, str: T.STR}[type(v)]


def _numeric(t: T.Type) -> bool:
    return t in (T.INT, T.FLOAT)
