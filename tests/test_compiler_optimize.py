"""The optimizer passes, one at a time, on graphs the lower pass produces.

Each pass is `pass_name(graph, ctx) -> graph` (weft/compiler/optimize/); the
list `PASSES` gives their order. After every pass the graph must still be a
DAG whose nodes carry the plan's step fields and whose data edges match what
the nodes read.
"""

from __future__ import annotations

import copy
from pathlib import Path

import networkx as nx
import pytest

from weft.plan import expr as px
from weft.compiler.check import check
from weft.compiler.diagnostics import Sink
from weft.compiler.loader import Loader
from weft.compiler.lower import field_refs, lower
from weft.compiler.optimize import PASSES, optimize
from weft.compiler.optimize.annotate_paths import annotate_paths
from weft.compiler.optimize.fold_constants import fold, fold_constants
from weft.compiler.optimize.inline_calls import inline_calls
from weft.compiler.optimize.reduce_control_edges import reduce_control_edges
from weft.compiler.emit import build_plan
from weft.compiler.resolve import resolve
from weft.compiler.types import typecheck

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
HERE = FIXTURES / "valid"  # sources given inline are placed here, so `use actions.*` resolves

NODE_FIELDS = {
    "name",
    "phase",
    "kind",
    "action",
    "call",
    "inputs",
    "outputs",
    "retry",
    "backoff",
    "timeout",
    "on_error",
    "when",
    "weight",
    "queue",
    "concurrency",
    "undo",
    "each",
    "wait",
    "origin",
    "span",
    "order",
}
ANNOTATIONS = {"level", "remaining", "critical"}


class Front:
    """The front half of the compiler on some sources: lowered graphs, one flow at a time."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        sink = Sink()
        sources = {str(path): text} if text is not None else None
        loader = Loader(sink, sources)
        loader.load(str(path))
        self.scopes = resolve(loader.program, sink)
        self.typing = typecheck(self.scopes, sink)
        check(loader.program, self.scopes, sink)
        errors = [d for d in sink.sorted() if d.severity == "error"]
        assert errors == [], [(d.code, d.span.line, d.message) for d in errors]
        self.search_path = loader.program.search_path()
        self.cache: dict = {}

    def lowered(self, flow: str) -> nx.DiGraph:
        return lower(self.scopes[flow], self.typing, self.finish)

    # What the optimizer asks of its context: the graph of another flow, inlined.
    def inlined(self, name: str) -> nx.DiGraph:
        if name not in self.cache:
            self.cache[name] = inline_calls(self.lowered(name), self)
        return copy.deepcopy(self.cache[name])

    def finish(self, graph: nx.DiGraph) -> dict:
        """The Plan of an `each` body: the passes in order, checked after each one."""
        return build_plan(run_passes(graph, self), self.search_path)


def front(text: str, name: str = "inline_source.flow") -> Front:
    return Front(HERE / name, text)


def assert_invariants(g: nx.DiGraph, annotated: bool = False) -> None:
    assert nx.is_directed_acyclic_graph(g)
    for n, fields in g.nodes(data=True):
        want = NODE_FIELDS | (ANNOTATIONS if annotated else set())
        assert want <= set(fields), (n, want - set(fields))
        assert fields["kind"] in ("action", "wait", "each") or (fields["kind"] == "call" and not annotated)
    for u, v, d in g.edges(data=True):
        assert isinstance(d["data"], list) and isinstance(d["control"], bool)
        assert d["data"] or d["control"], (u, v)
    # Every step output a node reads comes in on a data edge.
    for n, fields in g.nodes(data=True):
        for ref, field, into in field_refs(fields):
            assert ref in g, (n, ref)
            if ref != n:
                assert (field, into) in g.edges[ref, n]["data"], (ref, n, field, into)


def run_passes(g: nx.DiGraph, ctx) -> nx.DiGraph:
    assert_invariants(g)
    for i, each_pass in enumerate(PASSES):
        g = each_pass(g, ctx)
        assert_invariants(g, annotated=each_pass is annotate_paths or i > PASSES.index(annotate_paths))
    return g


SOURCES = [
    FIXTURES / "valid" / "everything.flow",
    FIXTURES / "valid" / "library.flow",
    FIXTURES / "valid" / "extension.flow",
    FIXTURES / "valid" / "nesting.flow",
    ROOT / "examples" / "foreman" / "host.flow",
    ROOT / "examples" / "katello" / "organization.flow",
    ROOT / "examples" / "bulk" / "hosts.flow",
]


def test_passes_run_in_the_documented_order():
    assert PASSES == (inline_calls, fold_constants, reduce_control_edges, annotate_paths)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_invariants_hold_after_every_pass(path):
    f = Front(path)
    for name in f.scopes:  # imported flows too: with the extensions this program applies
        run_passes(f.lowered(name), f)


# -- inline_calls -------------------------------------------------------------------------

CALLER = """
import "library.flow"
use actions.inventory as inv

flow caller(who: str) -> (ip: str) {
    first = inv.allocate(name: "base")
    primary = make_machine(name: who, cpus: 4)
        after first
    inv.configure(machine_id: primary.id, settings: (role: "db"), ip: primary.ip)
    return (ip: primary.ip)
}
"""


def test_inline_calls_prefixes_ids_and_rewires_data_edges():
    f = front(CALLER)
    g = f.lowered("caller")
    assert g.nodes["primary"]["kind"] == "call"
    assert g.has_edge("primary", "configure")
    g = inline_calls(g, f)
    assert "primary" not in g
    assert {"primary/vm", "primary/addr"} <= set(g)
    # The callee's own data edge, under the prefix.
    assert g.edges["primary/vm", "primary/addr"]["data"] == [("id", "machine_id")]
    # The callee's parameters became the call's arguments (or their defaults).
    vm = g.nodes["primary/vm"]
    assert vm["inputs"]["name"] == ["param", "who"]
    assert vm["inputs"]["cpus"] == ["lit", 4]
    assert g.nodes["primary/addr"]["inputs"]["subnet"] == ["lit", "10.0.0.0/24"]
    # A reference to the call's outputs now reads the callee's returned steps.
    configure = g.nodes["configure"]
    assert configure["inputs"]["machine_id"] == ["step", "primary/vm", "id"]
    assert configure["inputs"]["ip"] == ["step", "primary/addr", "ip"]
    assert ("id", "machine_id") in g.edges["primary/vm", "configure"]["data"]
    assert ("ip", "ip") in g.edges["primary/addr", "configure"]["data"]
    # What ran before the call runs before the callee's first steps.
    assert g.edges["first", "primary/vm"]["control"]
    # The caller's own return reads the callee's step, not the vanished call.
    assert g.graph["returns"] == {"ip": ["step", "primary/addr", "ip"]}
    assert sorted(d["order"] for _, d in g.nodes(data=True)) == list(range(len(g)))
    assert_invariants(g)


def test_inline_calls_leaves_a_graph_without_calls_alone():
    f = Front(ROOT / "examples" / "foreman" / "host.flow")
    g = f.lowered("create_host")
    before = nx.to_dict_of_dicts(g), dict(g.nodes(data=True))
    assert inline_calls(g, f) is g
    assert (nx.to_dict_of_dicts(g), dict(g.nodes(data=True))) == before


def test_inline_calls_nests_prefixes():
    f = front(
        'import "library.flow"\n'
        "flow pair(a: str) -> (ip: str) {\n    m = make_machine(name: a)\n    return (ip: m.ip)\n}\n"
        'flow outer() {\n    p = pair(a: "x")\n    std.log(message: p.ip)\n}\n'
    )
    g = inline_calls(f.lowered("outer"), f)
    assert {"p/m/vm", "p/m/addr", "log"} == set(g)
    assert g.nodes["log"]["inputs"]["message"] == ["step", "p/m/addr", "ip"]
    assert g.has_edge("p/m/addr", "log")


# -- fold_constants -----------------------------------------------------------------------


def test_fold_constants_folds_interpolation_partially():
    f = front(
        "flow f(a: str) {\n"
        '    std.log(message: "${a}-${1 + 2}")\n'
        "    std.log(message: \"x${2 * 3}y${'z'}\")\n"
        "    std.echo(value: [1 + 1, a, (k: 10 / 4)])\n"
        "}\n"
    )
    g = fold_constants(f.lowered("f"))
    assert g.nodes["log"]["inputs"]["message"] == ["fmt", [["param", "a"], "-3"]]
    assert g.nodes["log_2"]["inputs"]["message"] == ["lit", "x6yz"]
    assert g.nodes["echo"]["inputs"]["value"] == ["list", [["lit", 2], ["param", "a"], ["lit", {"k": 2.5}]]]
    assert_invariants(g)


def test_fold_keeps_what_it_cannot_know_or_compute():
    assert fold(["op", "+", ["lit", 1], ["lit", 2]]) == ["lit", 3]
    assert fold(["and", ["lit", True], ["not", ["lit", False]]]) == ["lit", True]
    unknown = ["op", "+", ["param", "n"], ["op", "*", ["lit", 2], ["lit", 3]]]
    assert fold(unknown) == ["op", "+", ["param", "n"], ["lit", 6]]
    assert fold(["step", "a", "ip"]) == ["step", "a", "ip"]
    # An error is left for the runtime to report where it happens.
    division = ["op", "/", ["lit", 1], ["lit", 0]]
    assert fold(division) == division
    # A nested interpolation is spliced into its parent.
    nested = ["fmt", ["a", ["fmt", ["b", ["param", "x"]]], "c"]]
    assert fold(nested) == ["fmt", ["ab", ["param", "x"], "c"]]
    # Folding agrees with the runtime's evaluator.
    e = ["op", "%", ["op", "-", ["lit", 17], ["lit", 2]], ["lit", 4]]
    assert fold(e) == ["lit", px.evaluate(e, px.Env())]


def test_fold_constants_reaches_when_undo_each_returns_and_defaults():
    f = front(
        "use actions.inventory as inv\n"
        "flow f(n: int = 2 * 3, xs: list[int] = [1 + 1]) -> (total: int) {\n"
        '    vm = inv.allocate(name: "a${1}")\n'
        "        when n > 1 + 1\n"
        "        undo inv.release(machine_id: 40 + 2)\n"
        '    each x in xs + [3 * 3] {\n        std.log(message: "${x}")\n    }\n'
        "    return (total: n + 2 * 2)\n"
        "}\n"
    )
    g = fold_constants(f.lowered("f"))
    vm = g.nodes["vm"]
    assert vm["inputs"]["name"] == ["lit", "a1"]
    assert vm["when"] == ["op", ">", ["param", "n"], ["lit", 2]]
    assert vm["undo"]["inputs"] == {"machine_id": ["lit", 42]}
    assert g.nodes["each"]["each"]["items"] == ["op", "+", ["param", "xs"], ["lit", [9]]]
    assert g.graph["returns"] == {"total": ["op", "+", ["param", "n"], ["lit", 4]]}
    assert [p["default"] for p in g.graph["params"]] == [["lit", 6], ["lit", [2]]]


# -- reduce_control_edges -----------------------------------------------------------------

ORDERING = """
flow f() {
    a = std.echo(value: 1)
    b = std.echo(value: a.value)
    c = std.echo(value: a.value)
        after b
    d = std.log(message: "done")
        after a, c
    e = std.log(message: "also")
        after a
}
"""


def test_reduce_control_edges_drops_implied_after_but_never_data_edges():
    f = front(ORDERING)
    g = f.lowered("f")
    assert g.edges["a", "d"] == {"data": [], "control": True}
    assert g.edges["a", "c"]["data"] == [("value", "value")]
    g = reduce_control_edges(g)
    assert not g.has_edge("a", "d")  # implied by a -> c -> d
    assert g.has_edge("a", "c")  # carries data, though a -> b -> c implies the order
    assert g.has_edge("b", "c") and g.has_edge("c", "d")
    assert g.has_edge("a", "e")  # the only path from a to e
    assert_invariants(g)
    # The order the graph implies is unchanged.
    before = nx.transitive_closure_dag(f.lowered("f"))
    assert set(nx.transitive_closure_dag(g).edges) == set(before.edges)


def test_reduce_control_edges_without_control_edges_is_a_no_op():
    f = front("flow f() {\n    a = std.echo(value: 1)\n    std.echo(value: a.value)\n}\n")
    g = f.lowered("f")
    edges = list(g.edges(data=True))
    assert list(reduce_control_edges(g).edges(data=True)) == edges


# -- annotate_paths -----------------------------------------------------------------------

WEIGHTS = """
flow f() {
    a = std.echo(value: 1)
    b = std.echo(value: a.value)
        weight 5
    c = std.echo(value: a.value)
    d = std.log(message: "${b.value} ${c.value}")
    e = std.log(message: "alone")
        weight 2
}
"""


def test_annotate_paths_levels_remaining_and_critical_path():
    f = front(WEIGHTS)
    g = annotate_paths(f.lowered("f"))
    nodes = g.nodes
    assert {n: nodes[n]["level"] for n in g} == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0}
    assert {n: nodes[n]["remaining"] for n in g} == {"a": 7.0, "b": 6.0, "c": 2.0, "d": 1.0, "e": 2.0}
    assert g.graph["critical_path"] == ["a", "b", "d"]
    assert {n for n in g if nodes[n]["critical"]} == {"a", "b", "d"}
    assert_invariants(g, annotated=True)


def test_critical_path_ties_go_to_source_order():
    f = front("flow f() {\n    x = std.echo(value: 1)\n    y = std.echo(value: 2)\n}\n")
    g = annotate_paths(f.lowered("f"))
    assert g.graph["critical_path"] == ["x"]


def test_optimize_is_the_passes_in_order():
    f = front(CALLER)
    by_hand = f.lowered("caller")
    for each_pass in PASSES:
        by_hand = each_pass(by_hand, f)
    at_once = optimize(f.lowered("caller"), f)
    assert build_plan(by_hand, []) == build_plan(at_once, [])


def test_inlined_finalize_waits_for_every_run_step_of_the_callee():
    f = front(
        "flow sub(n: str) {\n"
        "    a = std.echo(value: n)\n"
        '    b = std.echo(value: "other")\n'
        '    finalize {\n        std.log(message: "${a.value}")\n        std.log(message: "last")\n    }\n'
        "}\n"
        'flow top() {\n    s = sub(n: "1")\n}\n'
    )
    g = inline_calls(f.lowered("top"), f)
    assert {n: g.nodes[n]["phase"] for n in g} == {"s/a": "run", "s/b": "run", "s/log": "run", "s/log_2": "run"}
    # The first finalize step reads `a` and must still wait for `b`; the second follows the first.
    assert g.edges["s/a", "s/log"]["data"] == [("value", "message")]
    assert g.edges["s/b", "s/log"]["control"]
    assert g.has_edge("s/log", "s/log_2")
    assert nx.ancestors(g, "s/log_2") == {"s/a", "s/b", "s/log"}
    assert_invariants(g)
