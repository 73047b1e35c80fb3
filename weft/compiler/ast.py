"""The typed AST of a .flow file: frozen, slotted dataclasses, each with a span."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Span:
    """A source range: 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def seen_from(self, file: str) -> str:
        """Where this is, for a message about `file`: `line 4`, or `other.flow:4:5`, or
        `build/lib/pkg/audit.flow:4:5`: the path from `file`'s folder, so two files of
        one name never read alike."""
        if file == self.file:
            return f"line {self.line}"
        where = self.file
        if os.path.isabs(where) and os.path.isabs(file):
            where = os.path.relpath(where, os.path.dirname(file))
        return f"{where}:{self.line}:{self.col}"


# -- expressions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: object  # str, int, float, bool or None
    span: Span
    duration: bool = False  # written with a unit (2s): a value in seconds


@dataclass(frozen=True, slots=True)
class Interp:
    """An interpolated string: literal text and `${expr}` parts in order."""

    parts: tuple[Union[str, "Expr"], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Attr:
    obj: "Expr"
    name: str
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Index:
    obj: "Expr"
    index: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class RecordLit:
    fields: tuple["Arg", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % == != < <= > >= and or
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # not, -
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Invalid:
    """A literal the parser could lex but not read (reported already)."""

    text: str
    span: Span


Expr = Union[Literal, Interp, Name, Attr, Index, ListLit, RecordLit, Binary, Unary, Invalid]


# -- types --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeName:
    name: str
    args: tuple["TypeExpr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class FieldDecl:
    name: str
    type: "TypeExpr"
    optional: bool
    span: Span


@dataclass(frozen=True, slots=True)
class TypeRecord:
    fields: tuple[FieldDecl, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TypeOpt:
    inner: "TypeExpr"
    span: Span


TypeExpr = Union[TypeName, TypeRecord, TypeOpt]


# -- statements ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """`proxy.dns_create(name: ...)`: an action, or another flow when the target is one name."""

    target: tuple[str, ...]
    args: tuple[Arg, ...]
    span: Span
    target_span: Span


@dataclass(frozen=True, slots=True)
class Wait:
    signal: str
    fields: tuple[FieldDecl, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Each:
    var: str
    items: Expr
    concurrency: Expr | None
    body: tuple["Stmt", ...]
    span: Span
    var_span: Span


@dataclass(frozen=True, slots=True)
class Clause:
    """A step option: retry, timeout, undo, on error, when, weight, after, queue, concurrency."""

    kind: str
    value: object  # Expr, Call, str policy, or tuple of (name, span) for `after`
    span: Span
    extra: Expr | None = None  # backoff of retry


@dataclass(frozen=True, slots=True)
class Step:
    name: str | None
    head: Call | Wait | Each
    clauses: tuple[Clause, ...]
    span: Span
    name_span: Span | None

    def clause(self, kind: str) -> Clause | None:
        return next((c for c in self.clauses if c.kind == kind), None)


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Meta:
    label: Expr | None
    tags: Expr | None
    span: Span
    on_error: tuple[str, Span] | None = None  # the flow's default error policy


@dataclass(frozen=True, slots=True)
class Lock:
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Block:
    """`sequence { }`, `finalize { }`, `on success { }` or `on failure { }`."""

    kind: str  # sequence, finalize, success, failure
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Return:
    fields: tuple[Arg, ...]
    span: Span


Stmt = Union[Step, Let, Meta, Lock, Block, Return]


# -- top level ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: TypeExpr
    default: Expr | None
    span: Span
    secret: bool = False  # `secret str`: its value is shown as *** wherever a run is shown


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    params: tuple[Param, ...]
    results: tuple[FieldDecl, ...] | None
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Extend:
    flow: str
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Use:
    module: str
    alias: str
    span: Span


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    alias: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    file: str
    items: tuple[Use | Import | Flow | Extend, ...]

    def of(self, kind: type) -> list:
        return [i for i in self.items if isinstance(i, kind)]
