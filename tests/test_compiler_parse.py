"""The parse pass: AST shapes, a span on every node, literals, interpolation, recovery."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from weft.compiler import ast
from weft.compiler.diagnostics import Sink
from weft.compiler.literals import read_number, read_string
from weft.compiler.parse import parse_module

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = sorted((FIXTURES / "valid").glob("*.flow")) + sorted((ROOT / "examples").rglob("*.flow"))


def parse(text: str, file: str = "t.flow") -> tuple[ast.Module, list]:
    sink = Sink()
    module = parse_module(text, file, sink)
    return module, sink.sorted()


def parse_clean(text: str) -> ast.Module:
    module, diags = parse(text)
    assert diags == [], [(d.code, d.span.line, d.span.col, d.message) for d in diags]
    return module


def flow_body(text: str) -> tuple:
    """The statements of a one-flow module."""
    (flow,) = parse_clean(text).items
    return flow.body


def expr_of(source: str) -> ast.Expr:
    """The AST of an expression, written as a `let` value."""
    (let,) = flow_body(f"flow f() {{\n    let x = {source}\n}}\n")
    return let.value


def nodes(value, parent=None):
    """Every AST dataclass reachable from `value`, with its parent node."""
    if isinstance(value, ast.Span) or value is None:
        return
    if dataclasses.is_dataclass(value):
        yield value, parent
        for f in dataclasses.fields(value):
            yield from nodes(getattr(value, f.name), value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from nodes(v, parent)


def text_at(source: str, span: ast.Span) -> str:
    lines = source.split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.col - 1 : span.end_col - 1]
    parts = [lines[span.line - 1][span.col - 1 :]]
    parts += lines[span.line : span.end_line - 1]
    parts.append(lines[span.end_line - 1][: span.end_col - 1])
    return "\n".join(parts)


# -- spans ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_node_has_a_span_inside_its_parent(path):
    source = path.read_text(encoding="utf-8")
    module = parse_clean(source)
    count = 0
    for node, parent in nodes(module.items):
        count += 1
        span = node.span
        assert isinstance(span, ast.Span), node
        assert span.file == "t.flow"
        assert span.line >= 1 and span.col >= 1, node
        assert (span.end_line, span.end_col) >= (span.line, span.col), node
        assert span.end_line <= source.count("\n") + 1
        if parent is not None and not isinstance(parent, ast.Module):
            outer = parent.span
            assert (outer.line, outer.col) <= (span.line, span.col), (parent, node)
            assert (span.end_line, span.end_col) <= (outer.end_line, outer.end_col), (parent, node)
    assert count > 5


def test_spans_cover_exactly_the_text_of_their_node():
    source = (
        "use examples.foreman.proxy as proxy\n"
        "flow f(name: str, n: int = 2) -> (ip: str) {\n"
        '    dhcp = proxy.dhcp_reserve(subnet: "10.0.0.0/24", mac: name)\n'
        "        retry n * 2 backoff 2s\n"
        "    return (ip: dhcp.ip)\n"
        "}\n"
    )
    use, flow = parse_clean(source).items
    assert text_at(source, use.span) == "use examples.foreman.proxy as proxy"
    assert text_at(source, flow.name_span) == "f"
    assert text_at(source, flow.span).startswith("flow f(") and text_at(source, flow.span).endswith("}")
    p_name, p_n = flow.params
    assert text_at(source, p_name.span) == "name: str"
    assert text_at(source, p_n.span) == "n: int = 2"
    assert text_at(source, p_n.type.span) == "int"
    step, ret = flow.body
    assert text_at(source, step.name_span) == "dhcp"
    assert text_at(source, step.head.target_span) == "proxy.dhcp_reserve"
    assert text_at(source, step.head.span) == 'proxy.dhcp_reserve(subnet: "10.0.0.0/24", mac: name)'
    subnet, mac = step.head.args
    assert text_at(source, subnet.name_span) == "subnet"
    assert text_at(source, mac.span) == "mac: name"
    (retry,) = step.clauses
    assert text_at(source, retry.span) == "retry n * 2 backoff 2s"
    assert text_at(source, retry.value.span) == "n * 2"
    assert text_at(source, retry.extra.span) == "2s"
    assert text_at(source, ret.span) == "return (ip: dhcp.ip)"
    (field,) = ret.fields
    assert text_at(source, field.value.span) == "dhcp.ip"
    assert text_at(source, field.value.name_span) == "ip"


def test_interpolated_expressions_have_spans_in_file_coordinates():
    source = 'flow f(a: (b: int), xs: list[int]) {\n    std.log(message: "x ${a.b + 1} and ${xs[0]}!")\n}\n'
    (step,) = flow_body(source)
    interp = step.head.args[0].value
    assert isinstance(interp, ast.Interp)
    text, plus, middle, index, end = interp.parts
    assert (text, middle, end) == ("x ", " and ", "!")
    assert isinstance(plus, ast.Binary) and plus.op == "+"
    assert text_at(source, plus.span) == "a.b + 1"
    assert text_at(source, plus.left.span) == "a.b"
    assert text_at(source, plus.left.name_span) == "b"
    assert text_at(source, plus.right.span) == "1"
    assert isinstance(index, ast.Index)
    assert text_at(source, index.span) == "xs[0]"
    assert text_at(source, index.obj.span) == "xs"


def test_spans_after_a_syntax_error_still_point_at_their_text():
    # The first flow breaks, so the file is parsed item by item with line offsets.
    source = (
        "flow broken() {\n"
        '    std.log(message "x")\n'
        "}\n"
        "\n"
        "flow fine(who: str, n: int = 3) {\n"
        '    std.log(message: "hi ${who} ${n + 1}")\n'
        "}\n"
    )
    module, diags = parse(source)
    assert [(d.code, d.span.line) for d in diags] == [("E001", 2)]
    fine = next(i for i in module.items if isinstance(i, ast.Flow) and i.name == "fine")
    assert text_at(source, fine.params[1].span) == "n: int = 3"
    (step,) = fine.body
    plus = step.head.args[0].value.parts[3]
    assert text_at(source, plus.span) == "n + 1"
    for node, _ in nodes(fine):
        assert node.span.line >= 5, node


# -- shapes -----------------------------------------------------------------------------


def test_top_level_items():
    module = parse_clean(
        'use examples.foreman.proxy as proxy\nimport "lib.flow" as lib\nimport "other.flow"\n'
        'flow f() {\n}\nextend f {\n    std.log(message: "x")\n}\n'
    )
    use, imp, imp2, flow, ext = module.items
    assert (use.module, use.alias) == ("examples.foreman.proxy", "proxy")
    assert (imp.path, imp.alias) == ("lib.flow", "lib")
    assert (imp2.path, imp2.alias) == ("other.flow", None)
    assert (flow.name, flow.params, flow.results, flow.body) == ("f", (), None, ())
    assert ext.flow == "f" and len(ext.body) == 1
    assert module.of(ast.Flow) == [flow]


def test_flow_signature_types():
    (flow,) = parse_clean(
        "flow f(a: str, b: list[(name: str, mac: str)], c: dict[str, int], d: int?, e: str | None = none)"
        " -> (ip: str, note?: str) {\n}\n"
    ).items
    a, b, c, d, e = flow.params
    assert a.type == ast.TypeName("str", (), a.type.span)
    assert b.type.name == "list" and isinstance(b.type.args[0], ast.TypeRecord)
    assert [f.name for f in b.type.args[0].fields] == ["name", "mac"]
    assert c.type.name == "dict" and [t.name for t in c.type.args] == ["str", "int"]
    assert isinstance(d.type, ast.TypeOpt) and d.type.inner.name == "int"
    assert isinstance(e.type, ast.TypeOpt) and e.default.value is None
    ip, note = flow.results
    assert (ip.name, ip.optional, note.name, note.optional) == ("ip", False, "note", True)


def test_statements_and_clauses():
    body = flow_body(
        "flow f(xs: list[str]) {\n"
        '    meta label "L" tags ["a"] on error rollback\n'
        '    lock "k"\n'
        "    let v = 1\n"
        "    s = std.echo(value: v)\n"
        "        retry 2 backoff 1s\n"
        "        timeout 5m\n"
        '        undo std.log(message: "undo")\n'
        "        on error skip\n"
        "        when v > 0\n"
        "        weight 3\n"
        "        after t, u\n"
        '        queue "dc-${v}"\n'
        "        concurrency 3\n"
        "    t = wait approved(by: str, ticket?: int)\n"
        "    u = each x in xs concurrency 4 {\n"
        "        std.log(message: x)\n"
        "    }\n"
        '    sequence {\n        std.log(message: "1")\n    }\n'
        '    finalize {\n        std.log(message: "2")\n    }\n'
        '    on success {\n        std.log(message: "3")\n    }\n'
        '    on failure {\n        std.log(message: "4")\n    }\n'
        "    return (n: 1)\n"
        "}\n"
    )
    meta, lock, let, step, wait, each, seq, fin, ok, bad, ret = body
    assert isinstance(meta, ast.Meta) and meta.label.value == "L" and meta.on_error[0] == "rollback"
    assert [t.value for t in meta.tags.items] == ["a"]
    assert isinstance(lock, ast.Lock) and lock.value.value == "k"
    assert isinstance(let, ast.Let) and (let.name, let.value.value) == ("v", 1)
    assert isinstance(step, ast.Step) and step.name == "s" and step.head.target == ("std", "echo")
    kinds = [c.kind for c in step.clauses]
    assert kinds == ["retry", "timeout", "undo", "on_error", "when", "weight", "after", "queue", "concurrency"]
    assert step.clause("concurrency").value.value == 3
    assert step.clause("retry").extra.value == 1 and step.clause("retry").extra.duration
    assert step.clause("timeout").value.value == 300
    assert isinstance(step.clause("undo").value, ast.Call)
    assert step.clause("on_error").value[0] == "skip"
    assert [n for n, _ in step.clause("after").value] == ["t", "u"]
    assert isinstance(step.clause("queue").value, ast.Interp) and step.clause("queue").value.parts[0] == "dc-"
    assert isinstance(wait.head, ast.Wait) and wait.head.signal == "approved"
    assert [(f.name, f.optional) for f in wait.head.fields] == [("by", False), ("ticket", True)]
    assert isinstance(each.head, ast.Each) and each.head.var == "x" and each.head.concurrency.value == 4
    assert [b.kind for b in (seq, fin, ok, bad)] == ["sequence", "finalize", "success", "failure"]
    assert isinstance(ret, ast.Return) and ret.fields[0].name == "n"


def test_anonymous_step_and_nested_call_target():
    (step,) = flow_body('flow f() {\n    std.file.append(path: "p", line: "l")\n}\n')
    assert step.name is None and step.name_span is None
    assert step.head.target == ("std", "file", "append")


@pytest.mark.parametrize(
    "source, shape",
    [
        ("1 + 2 * 3", ("+", 1, ("*", 2, 3))),
        ("(1 + 2) * 3", ("*", ("+", 1, 2), 3)),
        ("10 - 4 - 3", ("-", ("-", 10, 4), 3)),
        ("7 % 3 / 2", ("/", ("%", 7, 3), 2)),
        ("1 < 2 and 3 >= 2 or false", ("or", ("and", ("<", 1, 2), (">=", 3, 2)), False)),
        ("not true and false", ("and", ("not", True), False)),
        ("not (true and false)", ("not", ("and", True, False))),
        ("-2 * 3", ("*", ("-", 2), 3)),
        ("1 == 1 != false", None),  # comparisons do not chain: a syntax error at '!='
    ],
)
def test_operator_precedence(source, shape):
    def show(e):
        if isinstance(e, ast.Literal):
            return e.value
        if isinstance(e, ast.Binary):
            return (e.op, show(e.left), show(e.right))
        if isinstance(e, ast.Unary):
            return (e.op, show(e.operand))
        raise AssertionError(e)

    if shape is None:
        _, diags = parse(f"flow f() {{\n    let x = {source}\n}}\n")
        assert (diags[0].code, diags[0].span.line, diags[0].span.col) == ("E001", 2, 20)
        return
    assert show(expr_of(source)) == shape


def test_collections_fields_and_indexing():
    e = expr_of('[(name: "a", n: 1), (name: "b", n: 2)][1].name')
    assert isinstance(e, ast.Attr) and e.name == "name"
    assert isinstance(e.obj, ast.Index) and e.obj.index.value == 1
    items = e.obj.obj
    assert isinstance(items, ast.ListLit) and len(items.items) == 2
    assert all(isinstance(r, ast.RecordLit) for r in items.items)
    assert [a.name for a in items.items[0].fields] == ["name", "n"]
    assert expr_of("[]") == ast.ListLit((), expr_of("[]").span)
    assert [x.value for x in expr_of("[1, 2, 3,]").items] == [1, 2, 3]
    assert expr_of("()").fields == ()
    assert isinstance(expr_of("(1)"), ast.Literal)  # parentheses, not a record
    assert [(x.value) for x in (expr_of("true"), expr_of("false"), expr_of("none"))] == [True, False, None]


# -- literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value, duration",
    [
        ("42", 42, False),
        ("1_000", 1000, False),
        ("3.25", 3.25, False),
        ("1e3", 1000.0, False),
        ("2.5E-1", 0.25, False),
        ("500ms", 0.5, True),
        ("30s", 30, True),
        ("1.5m", 90, True),
        ("2h", 7200, True),
        ("1d", 86400, True),
    ],
)
def test_numbers_and_durations(text, value, duration):
    lit = expr_of(text)
    assert isinstance(lit, ast.Literal)
    assert lit.value == value and type(lit.value) is type(value)
    assert lit.duration is duration
    assert read_number(text) == (value, duration, None)


@pytest.mark.parametrize(
    "text, message", [("2x", "unknown unit 'x'"), ("1.2.3", "invalid number"), ("3sec", "unknown unit")]
)
def test_unreadable_numbers_are_e002(text, message):
    module, diags = parse(f"flow f() {{\n    let x = {text}\n}}\n")
    (d,) = diags
    assert (d.code, d.span.line, d.span.col, d.span.end_col) == ("E002", 2, 13, 13 + len(text))
    assert message in d.message and d.hint
    (let,) = module.items[0].body
    assert isinstance(let.value, ast.Invalid) and let.value.text == text


@pytest.mark.parametrize(
    "source, value",
    [
        (r'"a\tb"', "a\tb"),
        (r'"line\nnext"', "line\nnext"),
        (r'"q\"q"', 'q"q'),
        (r"'single \'quoted\''", "single 'quoted'"),
        (r'"back\\slash"', "back\\slash"),
        (r'"not \${interpolated}"', "not ${interpolated}"),
        (r'"nul\0"', "nul\0"),
        ('"$ alone and {braces}"', "$ alone and {braces}"),
        ('""', ""),
    ],
)
def test_string_escapes(source, value):
    lit = expr_of(source)
    assert isinstance(lit, ast.Literal) and lit.value == value


def test_unknown_escape_is_reported_at_its_position():
    source = 'flow f() {\n    let x = "ab\\qcd"\n}\n'
    _, diags = parse(source)
    (d,) = diags
    assert (d.code, d.span.line, d.span.col, d.span.end_col) == ("E001", 2, 16, 18)
    assert text_at(source, d.span) == "\\q"


def test_interpolation_pieces():
    text, pieces, problems = read_string('"a ${x} b ${y.z}"')
    assert (text, problems) == ("", [])
    assert pieces == ["a ", (5, "x"), " b ", (12, "y.z")]
    assert read_string('"plain"') == ("plain", None, [])
    # A '}' inside a nested string does not close the interpolation.
    _, pieces, _ = read_string('"${f("}")} end"')
    assert pieces[0] == (3, 'f("}")') and pieces[1] == " end"
    _, _, problems = read_string('"open ${x"')
    assert problems and "not closed" in problems[0][2]


def test_invalid_interpolated_expression():
    source = 'flow f(who: str) {\n    std.log(message: "hi ${who +} there")\n}\n'
    module, diags = parse(source)
    (d,) = diags
    assert d.code == "E001" and d.span.line == 2 and "${who +}" in d.message
    (step,) = module.items[0].body
    parts = step.head.args[0].value.parts
    assert parts[0] == "hi " and isinstance(parts[1], ast.Invalid) and parts[2] == " there"


# -- syntax errors ------------------------------------------------------------------------


def test_every_broken_flow_is_reported_and_the_others_are_kept():
    source = (
        'flow one() {\n    std.log(message "1")\n}\n'
        'flow two() {\n    std.log(message: "2")\n}\n'
        'flow three() {\n    std.log(message: "3",, )\n}\n'
        'flow four() {\n    x = = std.log(message: "4")\n}\n'
    )
    module, diags = parse(source)
    assert [(d.code, d.span.line) for d in diags] == [("E001", 2), ("E001", 8), ("E001", 11)]
    assert "two" in [f.name for f in module.of(ast.Flow)]


def test_missing_comma_between_arguments_is_one_error():
    source = 'flow f(a: str) {\n    std.http.request(url: a method: "GET")\n    std.log(message: a)\n}\n'
    module, diags = parse(source)
    (d,) = diags
    assert (d.code, d.span.line, d.span.col) == ("E001", 2, 29)
    assert d.hint == "separate arguments with ','"
    assert len(module.items[0].body) == 2


def test_unclosed_brace_at_end_of_file():
    module, diags = parse('flow f() {\n    std.log(message: "x")\n')
    (d,) = diags
    assert d.code == "E001" and "end of file" in d.message and d.hint == "a '{' is not closed"
    assert module.items and module.items[0].name == "f"


def test_unexpected_character():
    _, diags = parse('flow f() {\n    std.log(message: "x") ; \n}\n')
    (d,) = diags
    assert (d.code, d.span.line, d.span.col) == ("E001", 2, 27) and "';'" in d.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   \t\n"])
def test_empty_files_parse_to_nothing(text):
    module, diags = parse(text)
    assert module.items == () and diags == []


def test_unterminated_string_is_reported_where_it_starts():
    source = 'flow greet(who: str) {\n    let x = "abc\n    std.log(message: who)\n}\n'
    _, diags = parse(source)
    assert diags[0].code == "E001" and (diags[0].span.line, diags[0].span.col) == (2, 13)
    assert "unterminated string" in diags[0].message


@pytest.mark.parametrize(
    "line",
    ['std.log(message: "hello ${who})', 'std.echo(value: [1, "abc])', "std.log(\n        message: 'x"],
)
def test_unterminated_string_is_one_error_and_the_rest_is_kept(line):
    # The string runs to the end of its line; what that line left open is closed quietly.
    source = f"flow greet(who: str) {{\n    {line}\n    std.log(message: who)\n}}\nflow other() {{\n}}\n"
    module, diags = parse(source)
    assert [(d.code, d.message.split(":")[0]) for d in diags] == [("E001", "unterminated string")]
    greet, other = module.of(ast.Flow)
    assert (greet.name, other.name, len(greet.body)) == ("greet", "other", 2)


def test_stray_operator_keeps_the_flow():
    module, diags = parse("flow f() {\n    let x = 1 == 1 != false\n}\n")
    assert [(d.code, d.span.line) for d in diags] == [("E001", 2)]
    assert [f.name for f in module.of(ast.Flow)] == ["f"]
