"""Issue 14's language forms, pass by pass: quoted record keys, `e ?? default`, `e?`, and an `each`
step's `results` (parse, resolve and types, lower to the Plan, evaluate, render)."""

from __future__ import annotations

from pathlib import Path

import pytest

from weft.compiler import ast, compile_paths
from weft.compiler.diagnostics import Sink
from weft.compiler.parse import parse_module
from weft.plan import expr as px
from weft.plan import types as T
from weft.plan.schema import PLAN_FORMAT, PLAN_VERSION, check_plan
from weft.errors import WeftError
from weft.render.style import expr_text
from weft.runtime.core import children as C


def parse_expr(source: str) -> ast.Expr:
    sink = Sink()
    module = parse_module(f"flow f() {{\n    let x = {source}\n}}\n", "t.flow", sink)
    assert not sink.items, sink.items
    return module.items[0].body[0].value


def compile_text(tmp_path: Path, text: str):
    path = tmp_path / "t.flow"
    path.write_text(text)
    return compile_paths([str(path)])


def errors(result) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in result.diagnostics]


# -- parse ---------------------------------------------------------------------------------------


def test_quoted_keys_parse_in_record_literals_and_record_types():
    e = parse_expr('("Content-Type": "application/json", "X-Request-Id": 7, plain: 1)')
    assert isinstance(e, ast.RecordLit)
    assert [a.name for a in e.fields] == ["Content-Type", "X-Request-Id", "plain"]
    sink = Sink()
    module = parse_module('flow f(h: ("Content-Type": str, "X-Id"?: int)) {\n}\n', "t.flow", sink)
    fields = module.items[0].params[0].type.fields
    assert [(f.name, f.optional) for f in fields] == [("Content-Type", False), ("X-Id", True)]


def test_an_interpolated_key_is_a_syntax_error():
    sink = Sink()
    parse_module('flow f(n: str) {\n    let x = ("${n}": 1)\n}\n', "t.flow", sink)
    assert [(d.code, d.span.line, d.span.col) for d in sink.items] == [("E001", 2, 14)]
    assert "cannot be interpolated" in sink.items[0].message


def test_default_binds_looser_than_sums_and_tighter_than_comparisons_and_groups_to_the_right():
    e = parse_expr("a.x ?? b ?? 1 + 2 == 3")
    assert isinstance(e, ast.Binary) and e.op == "=="
    dflt = e.left
    assert dflt.op == "??" and isinstance(dflt.left, ast.Attr)
    assert dflt.right.op == "??" and dflt.right.right.op == "+"


def test_optional_is_a_postfix_over_the_whole_access_chain():
    e = parse_expr('n.headers["Content-Type"]?')
    assert isinstance(e, ast.Unary) and e.op == "?"
    assert isinstance(e.operand, ast.Index) and e.operand.index.value == "Content-Type"
    e = parse_expr("n.ip? ?? x")
    assert e.op == "??" and isinstance(e.left, ast.Unary)


# -- types ---------------------------------------------------------------------------------------

FLOW = """
flow f(flag: bool) -> (a: str, b: str?, c: int, d: str?) {{
    probe = std.echo(value: 1) when flag
    sent = std.echo(value: ("Content-Type": "text/plain"))
    let h = ("Content-Type": "text/plain", n: 2)
    return ({ret})
}}
"""


@pytest.mark.parametrize(
    "ret, problems",
    [
        ('a: h["Content-Type"], b: probe.value?, c: h["n"], d: (probe.value ?? "x")?', []),
        ('a: h["Content-Typo"], b: none, c: 1, d: none', [("E108", 'has no field "Content-Typo"')]),
        ('a: h["n"], b: none, c: 1, d: none', [("E112", "declared str but the value is int")]),
        ('a: "x", b: none, c: h.n ?? "0", d: none', [("E107", "the default after '??' is str, but the value is int")]),
        ('a: "x", b: none, c: h.n?, d: none', [("E112", "declared int but the value is int?")]),
        ('a: "x", b: h["Content-Type"] ?? none, c: 1, d: none', []),
    ],
)
def test_record_keys_defaults_and_optionals_are_type_checked(tmp_path, ret, problems):
    result = compile_text(tmp_path, FLOW.format(ret=ret))
    got = [(c, m) for c, m in errors(result) if c.startswith("E")]
    assert len(got) == len(problems), got
    for (code, text), (c, m) in zip(problems, got):
        assert c == code and text in m, got


def test_the_type_of_a_record_with_quoted_keys_prints_them_quoted():
    t = T.record(**{"Content-Type": T.STR, "n": T.INT})
    assert str(t) == '("Content-Type": str, n: int)'
    assert T.from_data(T.to_data(t)) == t


EACH = """
flow host(name: str) -> (ip: str) {{
    std.log(message: name)
    return (ip: "10.0.0.1")
}}

flow bulk(names: list[str]) -> (ips: {want}) {{
    made = each n in names {{
{body}
    }}
    return (ips: made.results)
}}
"""


def test_each_results_are_a_list_of_the_optional_body_result(tmp_path):
    called = compile_text(tmp_path, EACH.format(want="list[(ip: str)?]", body="        host(name: n)"))
    assert errors(called) == []
    returned = compile_text(
        tmp_path, EACH.format(want="list[(ip: str, n: str)?]", body='        return (ip: "x", n: n)')
    )
    assert errors(returned) == []
    step = next(s for s in returned.plan("bulk")["steps"] if s["id"] == "made")
    assert (
        str(T.from_data(step["outputs"]))
        == "(total: int, succeeded: int, failed: int, results: list[(ip: str, n: str)?])"
    )
    assert step["each"]["plan"]["returns"] == {"ip": ["lit", "x"], "n": ["param", "n"]}


def test_each_results_are_checked_downstream(tmp_path):
    wrong = compile_text(tmp_path, EACH.format(want="list[(ip: int)?]", body="        host(name: n)"))
    assert [c for c, _ in errors(wrong)] == ["E112"]
    bare = compile_text(tmp_path, EACH.format(want="list[(ip: str)?]", body="        std.log(message: n)"))
    assert [(c, m) for c, m in errors(bare)] == [
        ("E108", "the output of step 'made' has no field 'results': its `each` body has no result")
    ]


def test_an_each_body_returns_once_and_only_at_its_top(tmp_path):
    twice = compile_text(
        tmp_path, EACH.format(want="list[(ip: str)?]", body='        return (ip: "a")\n        return (ip: "b")')
    )
    assert ("E112", "this `each` body returns twice") in errors(twice)
    nested = compile_text(
        tmp_path,
        EACH.format(want="list[(ip: str)?]", body='        sequence {\n            return (ip: "a")\n        }'),
    )
    assert any(c == "E122" and "top level of a flow or of an `each` body" in m for c, m in errors(nested))


# -- lower ---------------------------------------------------------------------------------------


def test_defaults_optionals_and_quoted_keys_lower_to_plan_expressions(tmp_path):
    result = compile_text(
        tmp_path,
        """
flow f(flag: bool) {
    probe = std.echo(value: ("Content-Type": "text/plain")) when flag
    std.log(message: probe["value"]["Content-Type"] ?? "none")
    std.echo(value: probe["value"]) when flag and true
    std.echo(value: probe.value?)
}
""",
    )
    assert [c for c, _ in errors(result)] == []
    steps = {s["id"]: s for s in result.plan()["steps"]}
    assert steps["probe"]["inputs"]["value"] == ["lit", {"Content-Type": "text/plain"}]
    read = ["idx", ["step", "probe", "value"], ["lit", "Content-Type"]]
    assert steps["log"]["inputs"]["message"] == ["dflt", read, ["lit", "none"]]
    assert steps["echo"]["inputs"]["value"] == ["step", "probe", "value"]  # n["value"] is n.value
    assert steps["echo_2"]["inputs"]["value"] == ["opt", ["step", "probe", "value"]]
    assert steps["log"]["data"] == [{"from": "probe", "field": "value", "to": "message"}]


def test_a_skippable_step_read_in_an_each_body_is_passed_as_optional(tmp_path):
    result = compile_text(
        tmp_path,
        """
flow f(flag: bool, items: list[int]) {
    probe = std.echo(value: 1) when flag
    each i in items {
        std.log(message: "${probe.value ?? i}")
    }
}
""",
    )
    assert errors(result) == []
    each = next(s for s in result.plan()["steps"] if s["kind"] == "each")
    assert each["inputs"]["probe"] == ["opt", ["step", "probe", None]]
    param = next(p for p in each["each"]["plan"]["params"] if p["name"] == "probe")
    assert str(T.from_data(param["type"])) == "(value: any)?"


def test_plans_say_version_2_and_older_plans_still_load():
    assert PLAN_VERSION == 2
    check_plan({"format": PLAN_FORMAT, "version": 1})
    with pytest.raises(WeftError, match="newer than this weft reads"):
        check_plan({"format": PLAN_FORMAT, "version": PLAN_VERSION + 1})


# -- evaluate ------------------------------------------------------------------------------------


def skipped(step_id: str) -> dict:
    raise px.Absent(f"step '{step_id}' has no outputs (it is skipped)")


@pytest.mark.parametrize(
    "e, value",
    [
        (["dflt", ["step", "n", "ip"], ["lit", "0.0.0.0"]], "0.0.0.0"),
        (["opt", ["step", "n", "ip"]], None),
        (["dflt", ["lit", None], ["lit", 3]], 3),
        (["dflt", ["lit", 0], ["lit", 3]], 0),
        (["dflt", ["get", ["lit", {"a": 1}], "b"], ["lit", 2]], 2),
        (["dflt", ["idx", ["lit", {"Content-Type": "x"}], ["lit", "Content-Type"]], ["lit", "y"]], "x"),
        (["opt", ["get", ["lit", None], "ip"]], None),
        (["dflt", ["op", "+", ["step", "n", "ip"], ["lit", "/24"]], ["lit", "none"]], "none"),
        (
            ["rec", [["Content-Type", ["lit", "a"]], ["X-Id", ["opt", ["step", "n", None]]]]],
            {"Content-Type": "a", "X-Id": None},
        ),
    ],
)
def test_defaults_and_optionals_evaluate_absent_values(e, value):
    assert px.evaluate(e, px.Env({}, skipped)) == value


def test_absent_values_are_errors_outside_a_default_or_optional():
    with pytest.raises(px.EvalError, match="has no outputs"):
        px.evaluate(["step", "n", "ip"], px.Env({}, skipped))
    with pytest.raises(px.EvalError, match="cannot read field 'ip' of none"):
        px.evaluate(["get", ["lit", None], "ip"], px.Env())
    with pytest.raises(px.EvalError, match="cannot read field 'ip' of int"):  # a wrong value is not absent
        px.evaluate(["opt", ["get", ["lit", 3], "ip"]], px.Env())


def test_an_unknown_reference_is_not_folded_away_by_a_default():
    with pytest.raises(px.Unresolved):
        px.evaluate(["dflt", ["param", "x"], ["lit", 1]], px.Env())


# -- render --------------------------------------------------------------------------------------


def test_weft_plan_writes_the_new_forms_as_a_flow_spells_them():
    assert expr_text(["dflt", ["step", "n", "ip"], ["lit", "0.0.0.0"]]) == 'n.ip ?? "0.0.0.0"'
    assert expr_text(["opt", ["step", "n", "Content-Type"]]) == 'n["Content-Type"]?'
    assert expr_text(["rec", [["Content-Type", ["lit", "a"]], ["b", ["lit", 1]]]]) == '("Content-Type": "a", b: 1)'
    assert expr_text(["op", "==", ["dflt", ["param", "a"], ["lit", 1]], ["lit", 1]]) == "(a ?? 1) == 1"


# -- the runtime's pure part ---------------------------------------------------------------------


def test_results_are_in_item_order_with_none_for_an_item_that_did_not_succeed():
    kids = {
        0: C.Child(0, "r0", "succeeded", result={"ip": "a"}),
        2: C.Child(2, "r2", "succeeded", result={"ip": "c"}),
        1: C.Child(1, "r1", "cancelled", result=None),
    }
    out = C.outputs(3, kids, results=True)
    assert out == {"total": 3, "succeeded": 2, "failed": 1, "results": [{"ip": "a"}, None, {"ip": "c"}]}
    assert "results" not in C.outputs(3, kids, results=False)
    done = C.look(2, None, {i: C.Child(i, f"r{i}", "succeeded", result={"i": i}) for i in (1, 0)}, {}, True)
    assert done.outputs["results"] == [{"i": 0}, {"i": 1}]


# -- skip safety: the rule's edges (the golden fixtures E126 and W206 have the main cases) -------

SKIPS = """
flow host(name: str) -> (ip: str) {{
    std.log(message: name)
    return (ip: "10.0.0.1")
}}

flow f(flag: bool, names: list[str]) {{
    {meta}
    probe = std.echo(value: 1) when flag
    {body}
}}
"""


@pytest.mark.parametrize(
    "meta, body, want",
    [
        ("", "std.log(message: 'x') when flag and probe.value == 1", []),
        ("", "std.log(message: 'x') when probe.value == 1 and flag", ["E126"]),
        ("", "std.echo(value: probe.value) when flag", []),
        ("", "std.echo(value: probe.value) when not flag", ["E126"]),
        ("", "p2 = std.echo(value: 1) when flag and names != []\n    std.echo(value: p2) when names != [] and flag", []),
        ("", "p2 = std.echo(value: 1) when flag and names != []\n    std.echo(value: p2) when flag", ["E126"]),
        ("", "each n in names { std.echo(value: probe.value) } when flag", []),
        ("", "each n in names { std.echo(value: probe) }", ["E126"]),
        ("", "m = each n in names { host(name: n) when flag }", ["E126"]),
        ("", "m = each n in names { host(name: n) }", []),
        ("meta on error skip", "std.echo(value: 1)", []),
        ("meta on error skip", "h = host(name: 'a')\n    std.log(message: h.ip)", ["W206"]),
        ("", "let a = probe.value\n    let b = [a, a]\n    std.echo(value: [b, b])", ["E126", "E126"]),  # two places
    ],
)
def test_which_reads_of_a_skippable_step_are_reported(tmp_path, meta, body, want):
    result = compile_text(tmp_path, SKIPS.format(meta=meta, body=body))
    assert [c for c, _ in errors(result) if c in ("E126", "W206")] == want, errors(result)
    assert [c for c, _ in errors(result) if c.startswith("E") and c != "E126"] == []
