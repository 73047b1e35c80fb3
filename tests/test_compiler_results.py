"""A flow's declared results and its `return` take any key (`-> ("Content-Type": str)`), and
`weft plan` shows what an `each` body returns."""

from __future__ import annotations

import json

from weft.compiler import compile_paths

HEADERS = """flow headers(kind: str) -> ("Content-Type": str, "X-Count": int, ok: bool) {
    n = std.echo(value: 3)
    return ("Content-Type": "application/${kind}", "X-Count": n.value, ok: true)
}

flow caller() -> (length: int) {
    h = headers(kind: "json")
    std.log(message: h["Content-Type"])
    return (length: h["X-Count"])
}

flow bulk(ids: list[str]) -> (seen: list[("X-Id": str, n: int)?]) {
    e = each id in ids concurrency 2 {
        std.log(message: id)
        return ("X-Id": id, n: 1)
    }
    return (seen: e.results)
}
"""


def compiled(source: str, tmp_path):
    path = str(tmp_path / "r.flow")
    return compile_paths([path], sources={path: source})


def found(comp) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.span.line, d.span.col, d.message) for d in comp.diagnostics]


def test_results_declared_and_returned_with_quoted_keys_compile_into_the_plan(tmp_path):
    comp = compiled(HEADERS, tmp_path)
    assert comp.diagnostics == []
    plan = comp.plans["headers"]
    assert [(r["name"], r["type"]) for r in plan["results"]] == [
        ("Content-Type", ["str"]),
        ("X-Count", ["int"]),
        ("ok", ["bool"]),
    ]
    assert list(plan["returns"]) == ["Content-Type", "X-Count", "ok"]
    # The caller reads the inlined flow's quoted results as typed fields.
    caller = comp.plans["caller"]
    assert caller["returns"] == {"length": ["step", "h/n", "value"]}
    log = next(s for s in caller["steps"] if s["id"] == "log")
    assert log["inputs"]["message"] == ["lit", "application/json"]
    body = next(s for s in comp.plans["bulk"]["steps"] if s["id"] == "e")["each"]["plan"]
    assert list(body["returns"]) == ["X-Id", "n"]


def test_quoted_results_are_checked_like_named_ones(tmp_path):
    comp = compiled(
        'flow f(x: str) -> ("Content-Type": str, n: int) {\n'
        '    return ("Content-Typ": x, n: "one", n: 2)\n'
        "}\n"
        "flow g() {\n"
        '    h = f(x: "t")\n'
        '    std.echo(value: h["Content-Type"] + 1)\n'
        '    std.echo(value: h["Nope"])\n'
        "}\n"
        "flow k() {\n"
        '    return ("X-Id": 1)\n'
        "}\n",
        tmp_path,
    )
    assert found(comp) == [
        ("E112", 2, 5, "return is missing 'Content-Type' (str) declared by flow 'f'"),
        ("E112", 2, 13, "flow 'f' declares no result 'Content-Typ'"),
        ("E112", 2, 34, "result 'n' is declared int but the value is str"),
        ("E109", 2, 41, "result 'n' is given twice"),
        ("E107", 6, 21, "cannot apply '+' to str and int"),
        ("E108", 7, 23, "the output of step 'h' has no field \"Nope\""),
        ("E112", 10, 5, "flow 'k' declares no result, so it cannot return one"),
    ]
    hints = {d.message: d.hint for d in comp.diagnostics}
    assert hints["flow 'f' declares no result 'Content-Typ'"] == "did you mean 'Content-Type'?"
    assert hints["flow 'k' declares no result, so it cannot return one"] == 'declare it: flow k(...) -> ("X-Id": ...)'


def test_a_result_key_cannot_be_interpolated(tmp_path):
    comp = compiled('flow m(x: str) -> ("${x}": str) {\n    return ("${x}": "a")\n}\n', tmp_path)
    message = "a record key cannot be interpolated: write it as a plain string"
    assert [(c, line, col, m) for c, line, col, m in found(comp) if c == "E001"] == [
        ("E001", 1, 20, message),
        ("E001", 2, 13, message),
    ]


def test_plan_shows_quoted_results_and_an_each_bodys_return_and_a_run_returns_them(weft):
    (weft.folder / "r.flow").write_text(HEADERS)
    text = weft("plan", "r.flow", "--flow", "headers", code=0).stdout.splitlines()
    assert text[0] == 'flow headers(kind: str) -> ("Content-Type": str, "X-Count": int, ok: bool)'
    assert text[-1] == 'returns "Content-Type": "application/${kind}", "X-Count": n.value, ok: true'
    bulk = weft("plan", "r.flow", "--flow", "bulk", code=0).stdout
    assert (
        '  * e  each id in ids (concurrency 2): 1 steps per item, each returns ("X-Id": id, n: 1)' in bulk.splitlines()
    )
    rid, _ = weft.run("r.flow", "--flow", "headers", "-i", "kind=json", code=0)
    assert weft.show(rid)["result"] == {"Content-Type": "application/json", "X-Count": 3, "ok": True}
    rid, _ = weft.run("r.flow", "--flow", "bulk", "-i", "ids=" + json.dumps(["a", "b"]), code=0)
    assert weft.show(rid)["result"] == {"seen": [{"X-Id": "a", "n": 1}, {"X-Id": "b", "n": 1}]}
