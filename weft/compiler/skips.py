"""Skip safety: the outputs of a step that may be skipped, read where nothing takes their place.

A step is skipped when its `when` is false, or when it fails under `on error
skip` (its own policy or the flow's `meta on error skip`); its outputs are
then absent and whatever reads them fails the run. A read is safe

- inside `e ?? default` (the default takes its place) or `e?` (none does);
- in a step that is skipped whenever the producer is: the `and` parts of its
  `when` include every `and` part of the producer's (in the reader's own
  `when`, as earlier parts, as `and` stops at the first false part); an
  `each` step's condition covers its body.

Every other read is reported where the reader holds it, with the path from
the producer through the lets it passes: E126 (an error) when the producer
has a `when`, as the run then fails on an ordinary path; W206 (a warning)
when it is skipped only if it fails (`on error skip`).
"""

from __future__ import annotations

from dataclasses import dataclass

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.exprs import to_plan
from weft.compiler.resolve import Scope, StepDecl, children
from weft.plan.types import key_text


@dataclass(frozen=True, slots=True)
class _Read:
    """An unguarded read of a step's outputs, found in an expression."""

    step: StepDecl
    scope: Scope  # the producer's scope
    field: str | None  # None: the whole record
    lets: tuple[str, ...]  # the lets it passes, outermost first
    span: ast.Span  # where the reader's expression holds it

    def text(self) -> str:
        name = self.step.id
        if self.field is None:
            return name
        key = key_text(self.field)
        return f"{name}.{key}" if key == self.field else f"{name}[{key}]"


Covered = tuple[tuple[Scope, list], ...]  # conditions known true where a read happens, by scope


def skip_safety(scope: Scope, sink: Sink) -> None:
    """Report every unsafe read of a possibly skipped step's outputs in a flow (and its `each` bodies)."""
    if _any_skippable(scope):
        _Checker(sink).scope(scope, (), "")


def _any_skippable(scope: Scope) -> bool:
    return any(scope.skip_causes(d) or (d.body is not None and _any_skippable(d.body)) for d in scope.steps.values())


class _Checker:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.memo: dict[int, list[_Read]] = {}  # a let's reads, by the let's symbol

    def scope(self, scope: Scope, covered: Covered, body: str) -> None:
        """Check the reads of `scope`'s steps and result; `body` names the `each` body it is ("": a flow)."""
        for decl in scope.steps.values():
            step = f"step '{decl.id}'" + (f" in {body}" if body else "")
            node, head = decl.node, decl.node.head
            clause = node.clause("when")
            parts = _conjuncts(clause.value) if clause is not None else []
            conds = [(scope, to_plan(p, scope)) for p in parts]
            inside = covered + tuple(conds)
            for i, part in enumerate(parts):
                self.site(part, scope, covered + tuple(conds[:i]), f"the `when` of {step}")
            if isinstance(head, ast.Call):
                for arg in head.args:
                    self.site(arg.value, scope, inside, f"{step} (argument '{arg.name}')")
            elif isinstance(head, ast.Each):
                self.site(head.items, scope, inside, f"the list of {step}")
                self.scope(decl.body, inside, f"the body of '{decl.id}'" + (f" in {body}" if body else ""))
            for c in node.clauses:
                if c.kind == "undo":
                    for arg in c.value.args:
                        self.site(arg.value, scope, inside, f"the undo of {step} (argument '{arg.name}')")
                elif c.kind == "queue":
                    self.site(c.value, scope, inside, f"the queue of {step}")
        whose = body or f"flow '{scope.name}'"
        for ret in scope.returns[:1]:
            for arg in ret.fields:
                self.site(arg.value, scope, covered, f"the result of {whose} (field '{arg.name}')")
        call = scope.result_call
        if call is not None:
            read = _Read(call, scope, None, (), call.span)
            self.report(read, covered, f"the result of {whose} (the result of its last step)")

    def site(self, e: ast.Expr, scope: Scope, covered: Covered, where: str) -> None:
        for read in self.reads(e, scope):
            self.report(read, covered, where)

    def report(self, read: _Read, covered: Covered, where: str) -> None:
        causes = read.scope.skip_causes(read.step)
        if "when" in causes:
            known = [c for s, c in covered if s is read.scope]
            parts = _conjuncts(read.step.node.clause("when").value)
            if all(to_plan(p, read.scope) in known for p in parts):
                causes = [c for c in causes if c != "when"]
        if not causes:
            return
        shown = read.text()
        path = " -> ".join([shown] + [f"let {n}" for n in read.lets] + [where])
        if "when" in causes:
            code, why = "E126", f"step '{read.step.id}' is skipped when its `when` is false"
            also = ", or give the reader step the same `when`"
        else:
            code, why, also = "W206", f"step '{read.step.id}' is skipped if it fails (on error skip)", ""
        what = "its outputs are" if read.field is None else f"{shown} is"
        self.sink.add(
            code,
            read.span,
            f"{why}, and then {what} absent: {path}",
            f"give a default ({shown} ?? ...) or read it as optional ({shown}?){also}",
        )

    def reads(self, e: ast.Expr, scope: Scope) -> list[_Read]:
        """The unguarded reads of skippable steps' outputs in `e` (as read in `scope`), lets followed:
        nothing inside `?`, or on the left of `??`, is one."""
        if isinstance(e, ast.Binary) and e.op == "??":
            return self.reads(e.right, scope)
        if isinstance(e, ast.Unary) and e.op == "?":
            return []
        name, field = _read_of(e)
        sym = scope.refs.get(id(name)) if name is not None else None
        if sym is not None and sym.kind == "step":
            return [_Read(sym.node, sym.scope, field, (), e.span)] if sym.scope.skip_causes(sym.node) else []
        if sym is not None and sym.kind == "let" and field is None:
            if id(sym) not in self.memo:
                self.memo[id(sym)] = []  # resolve cut the lets that read themselves; this only stops a loop
                inner = self.reads(sym.node.value, sym.scope)
                self.memo[id(sym)] = list({(id(r.step), r.field): r for r in inner}.values())
            return [_Read(r.step, r.scope, r.field, (sym.name,) + r.lets, e.span) for r in self.memo[id(sym)]]
        out: list[_Read] = []
        for child in children(e):
            out += self.reads(child, scope)
        return out


def _read_of(e: ast.Expr) -> tuple[ast.Name | None, str | None]:
    """(the name, the field) that `n`, `n.f` or `n["f"]` reads; (None, None) for anything else."""
    if isinstance(e, ast.Name):
        return e, None
    if isinstance(e, ast.Attr) and isinstance(e.obj, ast.Name):
        return e.obj, e.name
    if isinstance(e, ast.Index) and isinstance(e.obj, ast.Name):
        key = e.index.value if isinstance(e.index, ast.Literal) else None
        return (e.obj, key) if isinstance(key, str) else (None, None)
    return None, None


def _conjuncts(e: ast.Expr) -> list[ast.Expr]:
    """The parts of `a and b and c`, left to right."""
    if isinstance(e, ast.Binary) and e.op == "and":
        return _conjuncts(e.left) + _conjuncts(e.right)
    return [e]
