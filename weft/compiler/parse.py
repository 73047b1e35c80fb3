"""Parse pass: .flow text -> AST, with every syntax error reported.

The only module that imports Lark. A file that does not parse is re-parsed
item by item (each `use`, `import`, `flow`, `extend` starting a line), and a
failing item has its bad line blanked and is tried again, so one pass reports
several syntax errors and keeps the items that do parse for later passes.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.limits import Nesting
from weft.compiler.literals import read_number, read_string

MAX_RETRIES = 25  # repairs within one top-level item
MAX_SYNTAX_ERRORS = 50  # per file; past that the rest of the file is not read
_ITEM_START = re.compile(r"^(use|import|flow|extend)\b", re.M)


_LOCK = threading.RLock()


@lru_cache(maxsize=1)
def parser() -> Lark:
    grammar = resources.files("weft.grammar").joinpath("flow.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        maybe_placeholders=True,
        start=["start", "expr"],
        transformer=_BUILDER,
        cache=_cache_file(grammar),
    )


def _cache_file(grammar: str) -> str | bool:
    """Where Lark keeps its parse tables between processes (a per-user cache
    folder, keyed by the grammar's hash); building them costs ~0.2 s."""
    from weft.compiler.cache import folder as cache_folder

    folder = cache_folder()
    if folder is None:
        return False
    digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
    return os.path.join(folder, f"flow-{digest}.lark-cache")


def parse_module(text: str, file: str, sink: Sink) -> ast.Module:
    """Parse a whole file; syntax errors go to `sink`, the parts that parse are kept."""
    sink.note_source(file, text)
    with _LOCK:
        _BUILDER.file, _BUILDER.sink, _BUILDER.line_off, _BUILDER.col_off = file, sink, 0, 0
        _BUILDER.nesting = Nesting(sink)
        try:
            items = parser().parse(text, start="start")
        except UnexpectedInput:
            items = _recover(text, file, sink)
        finally:
            _BUILDER.nesting = Nesting()
    return ast.Module(file, tuple(items))


def _recover(text: str, file: str, sink: Sink) -> list:
    """Parse item by item, repairing each, to report every syntax error (up to a limit)."""
    starts = [m.start() for m in _ITEM_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    items: list = []
    for begin, end in zip(starts, starts[1:] + [len(text)]):
        line_off = text.count("\n", 0, begin)
        if sum(d.code == "E001" and d.span.file == file for d in sink.items) >= MAX_SYNTAX_ERRORS:
            at = ast.Span(file, line_off + 1, 1, line_off + 1, 1)
            sink.add("E001", at, f"too many syntax errors: stopped reading after {MAX_SYNTAX_ERRORS}")
            break
        items += _recover_chunk(text[begin:end], file, sink, line_off)
    return items


def _recover_chunk(chunk: str, file: str, sink: Sink, line_off: int) -> list:
    repair = _Repair(chunk.split("\n"), file, sink, line_off)
    _BUILDER.line_off, _BUILDER.col_off = line_off, 0
    try:
        return parser().parse(chunk, start="start", on_error=repair)
    except UnexpectedInput as e:
        repair.report(e)
        return []


# Tokens the repair may insert, innermost closers first.
_INSERTABLE = (("RPAR", ")"), ("RSQB", "]"), ("RBRACE", "}"), ("COMMA", ","), ("COLON", ":"))
MISSING = "__weft_missing__"


class _Repair:
    """Lark error handler: report, then insert a likely missing token or drop the bad one."""

    def __init__(self, lines: list[str], file: str, sink: Sink, line_off: int) -> None:
        self.lines, self.file, self.sink, self.line_off = lines, file, sink, line_off
        self.last_line = 0
        self.budget = MAX_RETRIES
        self.open_string = False  # an unterminated string swallowed the rest of its line

    def __call__(self, e: UnexpectedInput) -> bool:
        self.budget -= 1
        if self.budget < 0:
            return False
        line = getattr(e, "line", 0) or 0
        if self.open_string and isinstance(e, UnexpectedToken) and e.token.type != "$END":
            # What the swallowed line left open is closed quietly: it is the same mistake.
            self.open_string = False
            if self._close_before(e.interactive_parser, e.token):
                e.interactive_parser.feed_token(e.token)
                return True
        if not isinstance(e, UnexpectedToken) or e.token.type != "$END":
            if line != self.last_line:
                self.report(e)
            self.last_line = line
        if not isinstance(e, UnexpectedToken):
            self._swallow_string(e)
            return True
        ip = e.interactive_parser
        if e.token.type == "$END":
            self.report(e)
            return self._close_all(ip, e.token)
        if {"LET", "RBRACE"} <= ip.accepts():
            self._skip_line(ip)  # stray text between statements: drop the rest of its line
            return True
        candidates = _INSERTABLE + (("NAME", MISSING),)
        if e.token.type == "NAME" and self._followed_by(e.token, ":"):
            candidates = (("COMMA", ","),) + candidates  # `a: 1 b: 2`: a ',' is missing, not a ')'
        for kind, text in candidates:
            trial = ip.copy()
            trial.feed_token(Token.new_borrow_pos(kind, text, e.token)) if kind in trial.accepts() else None
            if kind in ip.accepts() and e.token.type in trial.accepts():
                ip.feed_token(Token.new_borrow_pos(kind, text, e.token))
                ip.feed_token(e.token)
                return True
        return True

    def _followed_by(self, tok: Token, text: str) -> bool:
        line = self.lines[tok.end_line - 1] if tok.end_line and tok.end_line <= len(self.lines) else ""
        return line[tok.end_column - 1 :].lstrip().startswith(text)

    def _skip_line(self, ip) -> None:
        state = ip.lexer_thread.state
        text = getattr(state.text, "text", state.text)
        start = state.line_ctr.char_pos
        end = text.find("\n", start)
        state.line_ctr.feed(text[start : len(text) if end < 0 else end])

    def _swallow_string(self, e: UnexpectedInput) -> None:
        """Read an unterminated string as a string running to the end of its line."""
        ip = getattr(e, "interactive_parser", None)
        if ip is None:
            return
        state = ip.lexer_thread.state
        text = getattr(state.text, "text", state.text)
        start = state.line_ctr.char_pos
        if text[start : start + 1] not in ("'", '"') or "STRING" not in ip.accepts():
            return
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line, column = state.line_ctr.line, state.line_ctr.column
        ip.feed_token(Token("STRING", '""', start, line, column, line, column + end - start, end))
        state.line_ctr.feed(text[start:end])
        self.open_string = True

    def _close_before(self, ip, tok: Token) -> bool:
        """Insert the closing brackets that let `tok` follow; False (and nothing inserted) if none do."""
        trial, closers = ip.copy(), []
        for _ in range(16):
            if tok.type in trial.accepts():
                for kind in closers:
                    ip.feed_token(Token.new_borrow_pos(kind, dict(_INSERTABLE)[kind], tok))
                return True
            options = [k for k, _ in _INSERTABLE[:3] if k in trial.accepts()]
            if not options:
                return False
            closers.append(options[0])
            trial.feed_token(Token.new_borrow_pos(options[0], dict(_INSERTABLE)[options[0]], tok))
        return False

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
    "COALESCE": "'??'",
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
        hint = _hint_for(tok, expected, lines)
        if tok.type == "$END":  # point just past the last text, where the closer belongs
            n = next((i for i in range(len(lines), 0, -1) if lines[i - 1].strip()), 1)
            end = len(lines[n - 1].rstrip()) + 1 if lines else 1
            span = ast.Span(file, n + line_off, end, n + line_off, end + 1)
        else:
            span = ast.Span(file, tok.line + line_off, tok.column, tok.end_line + line_off, tok.end_column)
    else:
        message = "unexpected end of the file"
        span = ast.Span(file, line, col, line, col)
    sink.add("E001", span, message, hint)


_OPTION_WORDS = re.compile(r"\s*(retry|timeout|undo|when|weight|after|queue|concurrency)\s*")


def _hint_for(tok: Token, expected: set[str], lines: list[str]) -> str | None:
    if expected == {"COLON"} or expected == {"COLON", "OPTMARK"}:
        return "arguments and fields are named: write `name: value`"
    if tok.type == "EQUAL" and "COLON" in expected:
        return "use ':' between a name and its value"
    if tok.type == "$END":
        opener = next((o for c, o in (("RPAR", "("), ("RSQB", "["), ("RBRACE", "{")) if c in expected), "{")
        return f"a '{opener}' is not closed"
    if tok.type == "NAME" and "RPAR" in expected and "COMMA" in expected:
        return "separate arguments with ','"
    line = lines[tok.line - 1] if tok.type == "EQUAL" and 0 < (tok.line or 0) <= len(lines) else ""
    option = _OPTION_WORDS.fullmatch(line[: tok.column - 1])  # `queue = ...` below a step
    if option:
        return f"after a step, `{option[1]}` begins an option of that step: give this step another name"
    return None


def _start(x):
    """(line, col) where a token, node, or sequence of them begins; None if empty."""
    if type(x) is Token:  # the third item: a token's position still needs the offsets
        return None if x.line is None else (x.line, x.column, True)
    if type(x) in (list, tuple):
        for y in x:
            found = _start(y)
            if found is not None:
                return found
        return None
    span = getattr(x, "span", None)
    return None if span is None else (span.line, span.col, False)


def _end(x):
    if type(x) is Token:
        return None if x.end_line is None else (x.end_line, x.end_column, True)
    if type(x) in (list, tuple):
        for y in reversed(x):
            found = _end(y)
            if found is not None:
                return found
        return None
    span = getattr(x, "span", None)
    return None if span is None else (span.end_line, span.end_col, False)


def _items(c) -> tuple:
    return tuple(x for x in c if x is not None and not isinstance(x, Token))


class Builder(Transformer):
    """Builds AST nodes while Lark parses (an inline transformer: no parse tree).

    Spans come from the first and last token of each node, so keywords and
    closing brackets that bound a node are named terminals in the grammar.
    The file, sink and offsets are set per parse by `parse_module`.
    """

    file = ""
    sink: Sink
    line_off = 0
    col_off = 0
    nesting = Nesting()  # how deep the nodes built are (E124)

    def span(self, *parts) -> ast.Span:
        if len(parts) == 1:
            parts = parts[0]
        first, last = _start(parts), _end(parts)
        if first is None or last is None:
            return ast.Span(self.file, 1 + self.line_off, 1, 1 + self.line_off, 1)
        # Columns shift only on an interpolation's own line (its text has no newlines).
        # A child node's span is in file coordinates already; only tokens are shifted.
        lo, co = self.line_off, self.col_off
        return ast.Span(
            self.file,
            first[0] + lo * first[2],
            first[1] + co * first[2],
            last[0] + lo * last[2],
            last[1] + co * last[2],
        )

    # -- top level --------------------------------------------------------------

    def start(self, c):
        return list(c)

    def use(self, c):
        return ast.Use(".".join(c[1]), str(c[2]), self.span(c))

    def import_(self, c):
        path = read_string(str(c[1]))[0]
        return ast.Import(path, str(c[2]) if c[2] else None, self.span(c))

    def dotted(self, c):
        return tuple(c)

    def flow(self, c):
        kw, name, params, results, body = c
        results = None if results is None else tuple(results)
        return ast.Flow(str(name), tuple(params or ()), results, body[0], self.span(kw, body[1]), self.span(name))

    def params(self, c):
        return _items(c)

    fields = params
    args = params
    entries = params
    type_fields = params

    def param(self, c):
        return ast.Param(str(c[0]), c[2], c[3], self.span(c), secret=c[1] is not None)

    def field(self, c):
        return ast.FieldDecl(str(c[0]), c[2], c[1] is not None, self.span(c))

    def quoted_field(self, c):
        return ast.FieldDecl(self._key(c[0]), c[2], c[1] is not None, self.span(c))

    def _key(self, tok: Token) -> str:
        """A quoted record key (`"Content-Type"`): a plain string, read at compile time."""
        text, pieces, problems = read_string(str(tok))
        span = self.span(tok)
        for offset, length, message in problems:
            col = span.col + offset
            self.sink.add("E001", ast.Span(self.file, span.line, col, span.line, col + length), message)
        if pieces is not None:
            self.sink.add("E001", span, "a record key cannot be interpolated: write it as a plain string")
        return text

    def extend(self, c):
        kw, name, body = c
        return ast.Extend(str(name), body[0], self.span(kw, body[1]), self.span(name))

    # -- types ------------------------------------------------------------------

    def type_name(self, c):
        args = _items(c[1:])
        return self.nesting.type(ast.TypeName(str(c[0]), args, self.span(c)), *args)

    def type_record(self, c):
        fields = tuple(c[1] or ())
        return self.nesting.type(ast.TypeRecord(fields, self.span(c)), *(f.type for f in fields))

    def type_opt(self, c):
        return self.nesting.type(ast.TypeOpt(c[0], self.span(c)), c[0])

    # -- statements -------------------------------------------------------------

    def block(self, c):
        """(statements, the span from '{' to '}')."""
        return tuple(c[1:-1]), (c[0], c[-1])

    def meta(self, c):
        parts = c[1:]
        label = next((v for k, v, _ in parts if k == "label"), None)
        tags = next((v for k, v, _ in parts if k == "tags"), None)
        policy = next((v for k, v, _ in parts if k == "on_error"), None)
        return ast.Meta(label, tags, self.span(c[0], parts[-1][2]), policy)

    def meta_label(self, c):
        return ("label", c[0], c[0])

    def meta_tags(self, c):
        return ("tags", c[0], c[0])

    def meta_on_error(self, c):
        return ("on_error", (str(c[1]), self.span(c[1])), c[1])

    def lock(self, c):
        return ast.Lock(c[1], self.span(c))

    def let(self, c):
        return ast.Let(str(c[1]), c[2], self.span(c), self.span(c[1]))

    def step(self, c):
        name, head, *clauses = c
        step = ast.Step(
            str(name) if name is not None else None,
            head,
            tuple(clauses),
            self.span(c),
            self.span(name) if name is not None else None,
        )
        self.nesting.same(step, head)
        return step

    def call(self, c):
        target, args, _close = c
        return ast.Call(tuple(str(t) for t in target), tuple(args or ()), self.span(c), self.span(target))

    def arg(self, c):
        return ast.Arg(str(c[0]), c[1], self.span(c), self.span(c[0]))

    def quoted_arg(self, c):
        return ast.Arg(self._key(c[0]), c[1], self.span(c), self.span(c[0]))

    def wait(self, c):
        return ast.Wait(str(c[1]), tuple(c[2] or ()), self.span(c))

    def each(self, c):
        kw, var, items, _concurrency, concurrency, body = c
        each = ast.Each(str(var), items, concurrency, body[0], self.span(kw, body[1]), self.span(var))
        return self.nesting.block(each, body[0])

    def retry(self, c):
        return ast.Clause("retry", c[1], self.span(c), c[2])

    def _make_clause(kind):
        def build(self, c):
            return ast.Clause(kind, c[1], self.span(c))

        return build

    timeout = _make_clause("timeout")
    undo = _make_clause("undo")
    when = _make_clause("when")
    weight = _make_clause("weight")
    queue = _make_clause("queue")
    concurrency = _make_clause("concurrency")
    del _make_clause

    def on_error(self, c):
        return ast.Clause("on_error", (str(c[1]), self.span(c[1])), self.span(c))

    def after(self, c):
        return ast.Clause("after", tuple((str(t), self.span(t)) for t in c[1:]), self.span(c))

    def _make_block(kind):
        def build(self, c):
            kw, body = c
            name = kind or ("success" if str(kw).endswith("success") else "failure")
            return self.nesting.block(ast.Block(name, body[0], self.span(kw, body[1])), body[0])

        return build

    sequence = _make_block("sequence")
    finalize = _make_block("finalize")
    hook = _make_block(None)
    del _make_block

    def return_(self, c):
        return ast.Return(tuple(c[1] or ()), self.span(c))

    # -- expressions ------------------------------------------------------------

    def or_(self, c):
        return self.nesting.expr(ast.Binary("or", c[0], c[1], self.span(c)), c[0], c[1])

    def and_(self, c):
        return self.nesting.expr(ast.Binary("and", c[0], c[1], self.span(c)), c[0], c[1])

    def not_(self, c):
        return self.nesting.expr(ast.Unary("not", c[1], self.span(c)), c[1])

    def neg(self, c):
        return self.nesting.expr(ast.Unary("-", c[1], self.span(c)), c[1])

    def default(self, c):
        return self.nesting.expr(ast.Binary("??", c[0], c[2], self.span(c)), c[0], c[2])

    def maybe(self, c):
        return self.nesting.expr(ast.Unary("?", c[0], self.span(c)), c[0])

    def binop(self, c):
        return self.nesting.expr(ast.Binary(str(c[1]), c[0], c[2], self.span(c)), c[0], c[2])

    def attr(self, c):
        return self.nesting.expr(ast.Attr(c[0], str(c[1]), self.span(c), self.span(c[1])), c[0])

    def index(self, c):
        return self.nesting.expr(ast.Index(c[0], c[1], self.span(c)), c[0], c[1])

    def number(self, c):
        span = self.span(c)
        value, duration, problem = read_number(str(c[0]))
        if problem:
            code, message, hint = problem
            self.sink.add(code, span, message, hint)
            return ast.Invalid(str(c[0]), span)
        return ast.Literal(value, span, duration)

    def string(self, c):
        tok = c[0]
        span = self.span(c)
        text, pieces, problems = read_string(str(tok))
        for offset, length, message in problems:
            col = span.col + offset
            self.sink.add("E001", ast.Span(self.file, span.line, col, span.line, col + length), message)
        if pieces is None:
            return ast.Literal(text, span)
        parts: list = []
        for piece in pieces:
            if isinstance(piece, str):
                parts.append(piece)
            else:
                offset, source = piece
                parts.append(self._inner(source, span.line, span.col + offset))
        return self.nesting.expr(ast.Interp(tuple(parts), span), *(p for p in parts if not isinstance(p, str)))

    def _inner(self, source: str, line: int, col: int) -> ast.Expr:
        """Parse the expression inside `${...}`, with spans in the file's coordinates."""
        span = ast.Span(self.file, line, col, line, col + len(source))
        saved = self.line_off, self.col_off
        self.line_off, self.col_off = line - 1, col - 1
        try:
            return parser().parse(source, start="expr")
        except UnexpectedInput as e:
            at = col + (getattr(e, "column", 1) or 1) - 1
            self.sink.add("E001", ast.Span(self.file, line, at, line, at + 1), f"invalid expression in '${{{source}}}'")
            return ast.Invalid(source, span)
        finally:
            self.line_off, self.col_off = saved

    def true(self, c):
        return ast.Literal(True, self.span(c))

    def false(self, c):
        return ast.Literal(False, self.span(c))

    def none(self, c):
        return ast.Literal(None, self.span(c))

    def name(self, c):
        if c[0] == MISSING:  # inserted by error repair; the syntax error is reported
            return ast.Invalid("", self.span(c))
        return ast.Name(str(c[0]), self.span(c))

    def list(self, c):
        items = _items(c)
        return self.nesting.expr(ast.ListLit(items, self.span(c)), *items)

    def record(self, c):
        fields = tuple(c[1] or ())
        return self.nesting.expr(ast.RecordLit(fields, self.span(c)), *(f.value for f in fields))


_BUILDER = Builder()
