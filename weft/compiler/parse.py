"""Parse pass: .flow text -> AST, with every syntax error reported.

The only module that imports Lark. A file that does not parse is re-parsed
item by item (each `use`, `import`, `flow`, `extend` starting a line), and a
failing item has its bad line blanked and is tried again, so one pass reports
several syntax errors and keeps the items that do parse for later passes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.literals import read_number, read_string

MAX_RETRIES = 25
_ITEM_START = re.compile(r"^(use|import|flow|extend)\b", re.M)


@lru_cache(maxsize=1)
def parser() -> Lark:
    grammar = resources.files("weft.grammar").joinpath("flow.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "expr"],
        cache=False,
    )


def parse_module(text: str, file: str, sink: Sink) -> ast.Module:
    """Parse a whole file; syntax errors go to `sink`, the parts that parse are kept."""
    sink.note_source(file, text)
    try:
        tree = parser().parse(text, start="start")
    except UnexpectedInput:
        return ast.Module(file, tuple(_recover(text, file, sink)))
    return ast.Module(file, tuple(Builder(file, sink).transform(tree).children))


def _recover(text: str, file: str, sink: Sink) -> list:
    """Parse item by item, blanking bad lines, to report every syntax error."""
    starts = [m.start() for m in _ITEM_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    items: list = []
    for begin, end in zip(starts, starts[1:] + [len(text)]):
        line_off = text.count("\n", 0, begin)
        items += _recover_chunk(text[begin:end], file, sink, line_off)
    return items


def _recover_chunk(chunk: str, file: str, sink: Sink, line_off: int) -> list:
    repair = _Repair(chunk.split("\n"), file, sink, line_off)
    try:
        tree = parser().parse(chunk, start="start", on_error=repair)
    except UnexpectedInput as e:
        repair.report(e)
        return []
    return list(Builder(file, sink, line_off).transform(tree).children)


# Tokens the repair may insert, innermost closers first.
_INSERTABLE = (("RPAR", ")"), ("RSQB", "]"), ("RBRACE", "}"), ("COMMA", ","), ("COLON", ":"))
MISSING = "__weft_missing__"


class _Repair:
    """Lark error handler: report, then insert a likely missing token or drop the bad one."""

    def __init__(self, lines: list[str], file: str, sink: Sink, line_off: int) -> None:
        self.lines, self.file, self.sink, self.line_off = lines, file, sink, line_off
        self.last_line = 0
        self.budget = MAX_RETRIES

    def __call__(self, e: UnexpectedInput) -> bool:
        self.budget -= 1
        if self.budget < 0:
            return False
        line = getattr(e, "line", 0) or 0
        if not isinstance(e, UnexpectedToken) or e.token.type != "$END":
            if line != self.last_line:
                self.report(e)
            self.last_line = line
        if not isinstance(e, UnexpectedToken):
            return True
        ip = e.interactive_parser
        if e.token.type == "$END":
            self.report(e)
            return self._close_all(ip, e.token)
        for kind, text in _INSERTABLE + (("NAME", MISSING),):
            trial = ip.copy()
            trial.feed_token(Token.new_borrow_pos(kind, text, e.token)) if kind in trial.accepts() else None
            if kind in ip.accepts() and e.token.type in trial.accepts():
                ip.feed_token(Token.new_borrow_pos(kind, text, e.token))
                ip.feed_token(e.token)
                return True
        return True

    def _close_all(self, ip, end: Token) -> bool:
        for _ in range(64):
            if "$END" in ip.accepts():
                return True
            options = [k for k, _ in _INSERTABLE[:3] if k in ip.accepts()]
            if not options:
                return False
            kind = options[0]
            ip.feed_token(Token.new_borrow_pos(kind, dict(_INSERTABLE)[kind], end))
        return False

    def report(self, e: UnexpectedInput) -> None:
        _report(e, self.file, self.sink, self.line_off, self.lines)


_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "ON_ERROR": "'on error'",
    "ON_SUCCESS": "'on success'",
    "ON_FAILURE": "'on failure'",
    "_ARROW": "'->'",
    "OPTMARK": "'?'",
    "$END": "the end of the file",
}


def _describe(term: str) -> str:
    if term in _WORDS:
        return _WORDS[term]
    for t in parser().terminals:
        if t.name == term and t.pattern.type == "str":
            return f"'{t.pattern.value}'"
    return term.lower()


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    kind = {"NAME": "name", "NUMBER": "number", "STRING": "string"}.get(tok.type)
    return f"{kind} '{tok}'" if kind else f"'{tok}'"


def _expected_words(expected: set[str]) -> str:
    if {"NAME", "NUMBER", "STRING"} <= expected:
        return "an expression"
    if {"LET", "META", "RBRACE"} <= expected:
        return "a statement or '}'"
    words = sorted({_describe(t) for t in expected})
    if len(words) > 6:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _report(e: UnexpectedInput, file: str, sink: Sink, line_off: int, lines: list[str]) -> None:
    line = (getattr(e, "line", 1) or 1) + line_off
    col = getattr(e, "column", 1) or 1
    hint = None
    if isinstance(e, UnexpectedCharacters):
        ch = lines[(e.line or 1) - 1][col - 1 : col] if e.line and e.line <= len(lines) else ""
        if ch in "\"'":
            message = "unterminated string: a string must close on the line it starts"
        else:
            message = f"unexpected character {ch!r}"
        span = ast.Span(file, line, col, line, col + 1)
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        expected = set(e.accepts or e.expected)
        words = _expected_words(expected)
        message = f"unexpected {_token_text(tok)}" + (f"; expected {words}" if words else "")
        hint = _hint_for(tok, expected)
        if tok.type == "$END":
            last = len(lines) + line_off
            span = ast.Span(file, last, 1, last, 1)
        else:
            span = ast.Span(file, tok.line + line_off, tok.column, tok.end_line + line_off, tok.end_column)
    else:
        message = "unexpected end of the file"
        span = ast.Span(file, line, col, line, col)
    sink.add("E001", span, message, hint)


def _hint_for(tok: Token, expected: set[str]) -> str | None:
    if expected == {"COLON"} or expected == {"COLON", "OPTMARK"}:
        return "arguments and fields are named: write `name: value`"
    if tok.type == "EQUAL" and "COLON" in expected:
        return "use ':' between a name and its value"
    if tok.type == "$END":
        opener = next((o for c, o in (("RPAR", "("), ("RSQB", "["), ("RBRACE", "{")) if c in expected), "{")
        return f"a '{opener}' is not closed"
    if tok.type == "NAME" and "RPAR" in expected and "COMMA" in expected:
        return "separate arguments with ','"
    return None


class Builder(Transformer):
    """Turns Lark's parse tree into AST nodes with spans."""

    def __init__(self, file: str, sink: Sink, line_off: int = 0, col_off: int = 0) -> None:
        super().__init__(visit_tokens=False)
        self.file, self.sink, self.line_off, self.col_off = file, sink, line_off, col_off

    def span(self, meta) -> ast.Span:
        if getattr(meta, "empty", False):
            return ast.Span(self.file, 1 + self.line_off, 1, 1 + self.line_off, 1)
        return ast.Span(
            self.file,
            meta.line + self.line_off,
            meta.column + self.col_off,
            meta.end_line + self.line_off,
            meta.end_column + self.col_off,
        )

    def tspan(self, tok: Token) -> ast.Span:
        """Tokens carry the same position attributes as rule metadata."""
        return self.span(tok)

    # -- top level --------------------------------------------------------------

    @v_args(meta=True)
    def use(self, meta, c):
        return ast.Use(".".join(c[0]), str(c[1]), self.span(meta))

    @v_args(meta=True)
    def import_(self, meta, c):
        path = read_string(str(c[0]))[0]
        return ast.Import(path, str(c[1]) if c[1] else None, self.span(meta))

    def dotted(self, c):
        return tuple(str(t) for t in c)

    @v_args(meta=True)
    def flow(self, meta, c):
        name, params, results, body = c
        results = None if results is None else tuple(results)
        return ast.Flow(str(name), tuple(params or ()), results, body, self.span(meta), self.tspan(name))

    def params(self, c):
        return tuple(x for x in c if x is not None)

    fields = params
    args = params

    @v_args(meta=True)
    def param(self, meta, c):
        return ast.Param(str(c[0]), c[1], c[2], self.span(meta))

    @v_args(meta=True)
    def field(self, meta, c):
        return ast.FieldDecl(str(c[0]), c[2], c[1] is not None, self.span(meta))

    @v_args(meta=True)
    def extend(self, meta, c):
        return ast.Extend(str(c[0]), c[1], self.span(meta), self.tspan(c[0]))

    # -- types ------------------------------------------------------------------

    @v_args(meta=True)
    def type_name(self, meta, c):
        return ast.TypeName(str(c[0]), tuple(x for x in c[1:] if x is not None), self.span(meta))

    @v_args(meta=True)
    def type_record(self, meta, c):
        return ast.TypeRecord(tuple(c[0] or ()), self.span(meta))

    @v_args(meta=True)
    def type_opt(self, meta, c):
        return ast.TypeOpt(c[0], self.span(meta))

    # -- statements -------------------------------------------------------------

    def block(self, c):
        return tuple(c)

    @v_args(meta=True)
    def meta(self, meta, c):
        label = next((v for k, v in c if k == "label"), None)
        tags = next((v for k, v in c if k == "tags"), None)
        policy = next((v for k, v in c if k == "on_error"), None)
        return ast.Meta(label, tags, self.span(meta), policy)

    def meta_label(self, c):
        return ("label", c[0])

    def meta_tags(self, c):
        return ("tags", c[0])

    def meta_on_error(self, c):
        return ("on_error", (str(c[1]), self.tspan(c[1])))

    @v_args(meta=True)
    def lock(self, meta, c):
        return ast.Lock(c[0], self.span(meta))

    @v_args(meta=True)
    def let(self, meta, c):
        return ast.Let(str(c[0]), c[1], self.span(meta), self.tspan(c[0]))

    @v_args(meta=True)
    def step(self, meta, c):
        name, head, *clauses = c
        return ast.Step(
            str(name) if name is not None else None,
            head,
            tuple(clauses),
            self.span(meta),
            self.tspan(name) if name is not None else None,
        )

    @v_args(meta=True)
    def call(self, meta, c):
        target_meta = self.span(meta)
        end = c[0]
        span = ast.Span(self.file, target_meta.line, target_meta.col, target_meta.line, target_meta.col + len(".".join(end)))
        return ast.Call(c[0], tuple(c[1] or ()), target_meta, span)

    @v_args(meta=True)
    def arg(self, meta, c):
        return ast.Arg(str(c[0]), c[1], self.span(meta), self.tspan(c[0]))

    @v_args(meta=True)
    def wait(self, meta, c):
        return ast.Wait(str(c[0]), tuple(c[1] or ()), self.span(meta))

    @v_args(meta=True)
    def each(self, meta, c):
        return ast.Each(str(c[0]), c[1], c[2], c[3], self.span(meta), self.tspan(c[0]))

    @v_args(meta=True)
    def retry(self, meta, c):
        return ast.Clause("retry", c[0], self.span(meta), c[1])

    def _clause(kind):
        @v_args(meta=True)
        def build(self, meta, c):
            return ast.Clause(kind, c[0], self.span(meta))

        return build

    timeout = _clause("timeout")
    undo = _clause("undo")
    when = _clause("when")
    weight = _clause("weight")

    @v_args(meta=True)
    def on_error(self, meta, c):
        return ast.Clause("on_error", (str(c[1]), self.tspan(c[1])), self.span(meta))

    @v_args(meta=True)
    def after(self, meta, c):
        return ast.Clause("after", tuple((str(t), self.tspan(t)) for t in c), self.span(meta))

    @v_args(meta=True)
    def sequence(self, meta, c):
        return ast.Block("sequence", c[0], self.span(meta))

    @v_args(meta=True)
    def finalize(self, meta, c):
        return ast.Block("finalize", c[0], self.span(meta))

    @v_args(meta=True)
    def hook(self, meta, c):
        kind = "success" if str(c[0]).endswith("success") else "failure"
        return ast.Block(kind, c[1], self.span(meta))

    @v_args(meta=True)
    def return_(self, meta, c):
        return ast.Return(tuple(c[0] or ()), self.span(meta))

    # -- expressions ------------------------------------------------------------

    @v_args(meta=True)
    def or_(self, meta, c):
        return ast.Binary("or", c[0], c[1], self.span(meta))

    @v_args(meta=True)
    def and_(self, meta, c):
        return ast.Binary("and", c[0], c[1], self.span(meta))

    @v_args(meta=True)
    def not_(self, meta, c):
        return ast.Unary("not", c[0], self.span(meta))

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Unary("-", c[0], self.span(meta))

    @v_args(meta=True)
    def binop(self, meta, c):
        return ast.Binary(str(c[1]), c[0], c[2], self.span(meta))

    @v_args(meta=True)
    def attr(self, meta, c):
        return ast.Attr(c[0], str(c[1]), self.span(meta), self.tspan(c[1]))

    @v_args(meta=True)
    def index(self, meta, c):
        return ast.Index(c[0], c[1], self.span(meta))

    @v_args(meta=True)
    def number(self, meta, c):
        span = self.span(meta)
        value, duration, problem = read_number(str(c[0]))
        if problem:
            self.sink.add("E002", span, problem[0], problem[1])
            return ast.Invalid(str(c[0]), span)
        return ast.Literal(value, span, duration)

    @v_args(meta=True)
    def string(self, meta, c):
        tok = c[0]
        span = self.span(meta)
        text, pieces, problems = read_string(str(tok))
        for offset, length, message in problems:
            col = tok.column + self.col_off + offset
            self.sink.add("E001", ast.Span(self.file, span.line, col, span.line, col + length), message)
        if pieces is None:
            return ast.Literal(text, span)
        parts: list = []
        for piece in pieces:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                offset, source = piece
                parts.append(self._inner(source, span.line, tok.column + self.col_off + offset))
        return ast.Interp(tuple(parts), span)

    def _inner(self, source: str, line: int, col: int) -> ast.Expr:
        """Parse the expression inside `${...}`, with spans in the file's coordinates."""
        span = ast.Span(self.file, line, col, line, col + len(source))
        try:
            tree = parser().parse(source, start="expr")
        except UnexpectedInput as e:
            at = col + (getattr(e, "column", 1) or 1) - 1
            self.sink.add("E001", ast.Span(self.file, line, at, line, at + 1), f"invalid expression in '${{{source}}}'")
            return ast.Invalid(source, span)
        return Builder(self.file, self.sink, line - 1, col - 1).transform(tree)

    @v_args(meta=True)
    def true(self, meta, c):
        return ast.Literal(True, self.span(meta))

    @v_args(meta=True)
    def false(self, meta, c):
        return ast.Literal(False, self.span(meta))

    @v_args(meta=True)
    def none(self, meta, c):
        return ast.Literal(None, self.span(meta))

    @v_args(meta=True)
    def name(self, meta, c):
        if c[0] == MISSING:  # inserted by error repair; the syntax error is reported
            return ast.Invalid("", self.span(meta))
        return ast.Name(str(c[0]), self.span(meta))

    @v_args(meta=True)
    def list(self, meta, c):
        return ast.ListLit(tuple(x for x in c if x is not None), self.span(meta))

    @v_args(meta=True)
    def record(self, meta, c):
        return ast.RecordLit(tuple(c[0] or ()), self.span(meta))
