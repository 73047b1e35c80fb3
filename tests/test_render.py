"""weft.render.graph: diagrams checked through the SVG that Graphviz really draws."""

from __future__ import annotations

import copy
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import msgpack
import pytest
from runtime_support import diagrams as plans

from weft.errors import WeftError
from weft.render.collapse import overall_state
from weft.render.graph import body_summary, draw, to_dot
from weft.render.style import STATES, expr_text

pytestmark = pytest.mark.filterwarnings("error")  # a Graphviz warning means bad DOT

SVG = "{http://www.w3.org/2000/svg}"
HERE = Path(__file__).parent


def render(tmp_path, plan, *args, **kwargs) -> dict[str, dict[str, ET.Element]]:
    """Draw to SVG; return {"node"|"edge"|"cluster": {title: <g>}}."""
    out = tmp_path / "diagram.svg"
    draw(plan, str(out), *args, **kwargs)
    found: dict[str, dict[str, ET.Element]] = {"node": {}, "edge": {}, "cluster": {}}
    for g in ET.parse(out).getroot().iter(f"{SVG}g"):
        if g.get("class") in found:
            found[g.get("class")][g.find(f"{SVG}title").text] = g
    return found


def text(g: ET.Element) -> str:
    return " ".join(t.text or "" for t in g.iter(f"{SVG}text"))


def shape(g: ET.Element) -> ET.Element:
    return next(e for e in g if e.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse"))


def cluster_members(dot: str) -> dict[str, set[str]]:
    """Cluster label -> every node inside it (nested clusters included)."""
    import pygraphviz

    members = {}

    def walk(graph):
        for sub in graph.subgraphs():
            members[sub.graph_attr["label"]] = set(sub.nodes())
            walk(sub)

    walk(pygraphviz.AGraph(string=dot))
    return members


def test_steps_and_labelled_data_edges(tmp_path):
    svg = render(tmp_path, plans.create_host_plan())
    assert set(svg["node"]) == {"dhcp", "a", "ptr", "audit", "log", "notify", "alert"}
    assert text(svg["node"]["dhcp"]) == "dhcp proxy.dhcp_reserve retry 3 backoff 2s · undo ✓"
    assert "timeout 30s · undo ✓" in text(svg["node"]["ptr"])
    assert "audit.write on error skip" in text(svg["node"]["audit"])
    assert text(svg["edge"]["dhcp->a"]) == "ip → value"
    assert text(svg["edge"]["dhcp->ptr"]) == "ip → name"
    assert text(svg["edge"]["dhcp->log"]) == "ip → message"


def test_control_edges_are_dashed_and_unlabelled(tmp_path):
    svg = render(tmp_path, plans.create_host_plan())
    edge = svg["edge"]["a->audit"]
    assert text(edge) == ""
    assert shape(edge).get("stroke-dasharray")
    assert not shape(svg["edge"]["dhcp->ptr"]).get("stroke-dasharray")


def test_fields_between_the_same_steps_share_one_edge(tmp_path):
    steps = [
        plans.step("dhcp"),
        plans.step("dns", data=[("dhcp", "ip", "value"), ("dhcp", "host", "name"), ("dhcp", None, "lease")]),
    ]
    svg = render(tmp_path, plans.plan("pair", steps))
    assert [t for t in svg["edge"]] == ["dhcp->dns"]
    assert [t.text for t in svg["edge"]["dhcp->dns"].iter(f"{SVG}text")] == [
        "host → name",
        "ip → value",
        "→ lease",
    ]


def test_critical_path_edges_are_bolder(tmp_path):
    svg = render(tmp_path, plans.create_host_plan())
    assert plans.create_host_plan()["critical_path"] == ["dhcp", "a", "audit"]
    assert shape(svg["edge"]["dhcp->a"]).get("stroke-width") == "2.4"
    assert shape(svg["edge"]["a->audit"]).get("stroke-width") == "2.4"
    assert shape(svg["edge"]["dhcp->ptr"]).get("stroke-width") is None


def test_wait_and_when(tmp_path):
    svg = render(tmp_path, plans.approval_plan())
    assert text(svg["node"]["approved"]) == "approved wait for signal approved timeout 24h"
    assert text(svg["node"]["apply"]) == 'apply tickets.apply when approved.by != "" · on error rollback'
    assert text(svg["edge"]["approved->apply"]) == "by → who"


def test_title_names_the_flow_and_its_params():
    dot = to_dot(plans.create_host_plan())
    assert "<B>create_host</B>" in dot
    assert "domain: str = &quot;example.com&quot;) → (ip: str, fqdn: str)" in dot


def test_phase_and_extension_clusters(tmp_path):
    plan = plans.create_host_plan()
    svg = render(tmp_path, plan)
    labels = {text(g) for g in svg["cluster"].values()}
    assert labels == {"finalize", "on success", "on failure", "extension: audit.flow"}
    members = cluster_members(to_dot(plan))
    assert members["finalize"] == {"log"}
    assert members["on success"] == {"notify"}
    assert members["on failure"] == {"alert"}
    assert members["extension: audit.flow"] == {"audit"}


def test_each_is_one_summary_node_unless_expanded(tmp_path):
    svg = render(tmp_path, plans.bulk_plan())
    assert set(svg["node"]) == {"check", "each", "report"}
    assert text(svg["node"]["each"]) == "each each h in hosts ×10 3 steps of create_host: dhcp → a, ptr"
    assert set(svg["edge"]) == {"check->each", "each->report"}


def test_expanded_each_is_a_cluster_of_its_body(tmp_path):
    plan = plans.bulk_plan()
    svg = render(tmp_path, plan, expand=True)
    body = {"each[*]/create_host/dhcp", "each[*]/create_host/a", "each[*]/create_host/ptr"}
    assert set(svg["node"]) == {"check", "each", "report"} | body
    assert text(svg["edge"]["each[*]/create_host/dhcp->each[*]/create_host/a"]) == "ip → value"
    assert "check->each" in svg["edge"]
    assert "each[*]/create_host/ptr->report" in svg["edge"]  # leaves the cluster from its last step
    members = cluster_members(to_dot(plan, expand=True))
    assert members["each h in hosts ×10"] == body | {"each"}
    assert members["sub-flow: create_host"] == body


def test_nested_each_bodies_stay_unique(tmp_path):
    inner = plans.bulk_plan()
    outer_each = plans.step(
        "regions",
        kind="each",
        action=None,
        each={"var": "r", "items": plans.param("regions"), "concurrency": None, "plan": inner},
    )
    svg = render(tmp_path, plans.plan("regions", [outer_each]), expand=True)
    assert "regions[*]/each[*]/create_host/dhcp" in svg["node"]
    assert text(svg["node"]["regions[*]/each"]).startswith("each one sub-run per item")
    assert "each r in regions" in {text(g) for g in svg["cluster"].values()}


def test_states_fill_nodes_and_fill_a_legend(tmp_path):
    states = {"dhcp": "succeeded", "a": "failed", "ptr": "running", "audit": "skipped"}
    svg = render(tmp_path, plans.create_host_plan(), states)
    for step, state in states.items():
        assert shape(svg["node"][step]).get("fill") == STATES[state][0].lower()
    assert shape(svg["node"]["log"]).get("fill") == "white"
    assert text(svg["cluster"]["cluster_legend"]) == "states"
    assert text(svg["node"]["weft:legend"]) == "succeeded failed running skipped"


def test_counts_show_on_each_steps(tmp_path):
    counts = {"each": {"succeeded": 97, "failed": 1, "running": 2, "cancelled": 0}}
    svg = render(tmp_path, plans.bulk_plan(), {"each": "running"}, counts=counts)
    assert text(svg["node"]["each"]).endswith("✓ 97 ✗ 1 ▶ 2")


def test_to_dot_is_deterministic():
    plan = plans.create_host_plan()
    states = {"ptr": "running", "dhcp": "succeeded"}
    first = to_dot(plan, states, expand=True, counts={"dhcp": {"failed": 1, "succeeded": 2}})
    again = msgpack.unpackb(msgpack.packb(copy.deepcopy(plan)))
    assert (
        to_dot(again, dict(reversed(states.items())), expand=True, counts={"dhcp": {"succeeded": 2, "failed": 1}})
        == first
    )
    assert to_dot(plans.bulk_plan(), expand=True) == to_dot(plans.bulk_plan(), expand=True)


def test_dot_file_is_the_dot_text(tmp_path):
    out = tmp_path / "flow.dot"
    draw(plans.bulk_plan(), str(out))
    assert out.read_text(encoding="utf-8") == to_dot(plans.bulk_plan())


@pytest.mark.parametrize("ext, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF-"), (".SVG", b"<?xml")])
def test_image_formats(tmp_path, ext, magic):
    out = tmp_path / f"flow{ext}"
    draw(plans.create_host_plan(), str(out), {"dhcp": "succeeded"})
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(magic)


def test_unknown_extension_is_a_user_error(tmp_path):
    with pytest.raises(WeftError) as e:
        draw(plans.create_host_plan(), "x.jpg")
    assert str(e.value) == "cannot draw to 'x.jpg': use .svg, .png, .pdf or .dot"
    assert e.value.exit_code == 2


def test_unwritable_path_is_a_user_error(tmp_path):
    with pytest.raises(WeftError, match="cannot write"):
        draw(plans.create_host_plan(), str(tmp_path / "missing" / "flow.dot"))


def test_labels_are_escaped(tmp_path):
    plan = plans.approval_plan()
    plan["flow"] = 'odd "<flow>" & co'
    plan["steps"][1]["wait"]["signal"] = "sig\\n<x>"
    plan["steps"][2]["when"] = ["op", "==", plans.ref("approved", "by"), plans.lit('a"b\\')]
    plan["steps"][2]["data"][0]["to"] = 'w"h\\o'
    svg = render(tmp_path, plan)
    assert text(svg["node"]["approved"]) == "approved wait for signal sig\\n<x> timeout 24h"
    assert 'when approved.by == "a\\"b\\\\"' in text(svg["node"]["apply"])
    assert text(svg["edge"]["approved->apply"]) == 'by → w"h\\o'


def test_big_plans_collapse_sub_flows(tmp_path):
    plan = plans.generated_plan(groups=40, size=50)
    assert len(plan["steps"]) == 2002
    states = {s["id"]: "succeeded" for s in plan["steps"][:101]}
    states["g001/s07"] = "failed"
    svg = render(tmp_path, plan, states)
    assert len(svg["node"]) == 43  # 40 groups, start, done and the legend
    assert text(svg["node"]["g000/*"]) == "g000 sub-flow · 50 steps ✓ 50"
    assert text(svg["node"]["g001/*"]) == "g001 sub-flow · 50 steps ✓ 49 ✗ 1"
    assert shape(svg["node"]["g001/*"]).get("fill") == STATES["failed"][0].lower()
    assert text(svg["edge"]["start->g000/*"]) == "out → input"
    assert "g039/*->done" in svg["edge"] and len(svg["edge"]) == 80


def test_expanded_big_plans_keep_every_step():
    dot = to_dot(plans.generated_plan(groups=7, size=50), expand=True)
    assert '"g006/s49" [' in dot and "/*" not in dot


def test_an_empty_plan_draws(tmp_path):
    svg = render(tmp_path, plans.plan("nothing", []), {})
    assert svg["node"] == {} and svg["edge"] == {}


def test_helpers():
    assert body_summary(plans.plan("empty", [])) == "no steps"
    assert overall_state(["succeeded", "pending"]) == "running"
    assert overall_state(["skipped", "succeeded"]) == "succeeded"
    assert overall_state(["pending", "pending"]) == "pending"
    e = ["and", ["not", ["param", "dry"]], ["op", ">", ["idx", ["param", "xs"], ["lit", 0]], ["neg", ["lit", 1]]]]
    assert expr_text(e) == "(not dry) and (xs[0] > (-1))"
    assert expr_text(["fmt", ["host ", ["get", ["step", "dhcp", None], "ip"]]]) == '"host ${dhcp.ip}"'


def test_importing_render_does_not_load_graphviz():
    code = (
        "import sys, weft.render.graph\n"
        f"sys.path.insert(0, {str(HERE)!r}); from runtime_support import diagrams as plans\n"
        "weft.render.to_dot(plans.bulk_plan())\n"
        "assert 'pygraphviz' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent)


def test_inlined_sub_flows_cluster_by_prefix():
    steps = [
        plans.step("prepare"),
        plans.step("host/dhcp", data=[("prepare", "subnet", "subnet")]),
        plans.step("host/dns/a", data=[("host/dhcp", "ip", "value")]),
    ]
    members = cluster_members(to_dot(plans.plan("nested", steps)))
    assert members == {"sub-flow: host": {"host/dhcp", "host/dns/a"}, "sub-flow: dns": {"host/dns/a"}}


def test_big_flat_plans_group_steps_by_level(tmp_path):
    plan = plans.layered_plan(layers=10, width=40)
    path = plan["critical_path"]
    assert len(plan["steps"]) == 423 and path == [f"r{i}c0" for i in range(10)] + ["audit9_0"]
    svg = render(tmp_path, plan)
    ext = "/srv/ext/audit.flow:"
    groups = {f"level {k}" for k in range(10)} | {f"{ext}level {k}" for k in range(1, 10)}
    assert set(svg["node"]) == set(path) | groups | {"audit9_1", "cleanup", "notify", "alert"}
    assert text(svg["node"]["level 4"]) == (
        "level 4 · 39 steps r4c1, r4c2, r4c3, … +36 proxy.work ×39 +7 edges from earlier levels"
    )
    assert text(svg["node"]["r4c0"]) == "r4c0 proxy.work +1 edge from earlier levels"
    assert text(svg["node"][f"{ext}level 3"]) == "level 3 · 2 steps audit2_0, audit2_1 audit.write ×2"
    assert text(svg["node"]["level 0"]) == "level 0 · 39 steps r0c1, r0c2, r0c3, … +36 proxy.work ×39"


def test_critical_path_stays_a_bold_chain_of_steps(tmp_path):
    plan = plans.layered_plan()
    svg = render(tmp_path, plan)
    path = plan["critical_path"]
    for tail, head in zip(path, path[1:]):
        assert shape(svg["edge"][f"{tail}->{head}"]).get("stroke-width") == "2.4"
    assert text(svg["edge"]["r2c0->r3c0"]) == "out → input"
    assert shape(svg["edge"]["level 2->level 3"]).get("stroke-width") is None


def test_edges_between_level_groups_merge_into_one_counted_edge(tmp_path):
    plan = plans.layered_plan()
    svg = render(tmp_path, plan)
    by_id = {s["id"]: s for s in plan["steps"]}
    critical = set(plan["critical_path"])

    def grouped(sid, level):
        s = by_id[sid]
        return sid not in critical and s["origin"] is None and s["level"] == level

    steps = [s for s in plan["steps"] if grouped(s["id"], 4)]
    pairs = {(d["from"], s["id"]) for s in steps for d in s["data"] if grouped(d["from"], 3)}
    assert len(pairs) == 77
    assert text(svg["edge"]["level 3->level 4"]) == "77 edges"
    to_audit = svg["edge"]["level 3->/srv/ext/audit.flow:level 4"]  # one `after`: dashed, unlabelled
    assert text(to_audit) == "" and shape(to_audit).get("stroke-dasharray")
    assert text(svg["edge"]["r3c0->level 4"]) == "out → extra"  # one edge keeps its fields
    # an edge skipping a level is counted in its head's label, not drawn
    assert "level 1->level 4" not in svg["edge"] and "r1c0->r4c0" not in svg["edge"]
    leaving = {title for title in svg["edge"] if title.startswith("level 4->")}
    assert leaving == {"level 4->level 5", "level 4->r5c0", "level 4->/srv/ext/audit.flow:level 5"}


def test_level_groups_keep_phase_and_extension_clusters(tmp_path):
    plan = plans.layered_plan()
    svg = render(tmp_path, plan)
    labels = {text(g) for g in svg["cluster"].values()}
    assert labels == {"finalize", "on success", "on failure", "extension: audit.flow"}
    members = cluster_members(to_dot(plan))
    ext = "/srv/ext/audit.flow:"
    assert members["extension: audit.flow"] == {f"{ext}level {k}" for k in range(1, 10)} | {"audit9_0", "audit9_1"}
    assert members["finalize"] == {"cleanup"}
    assert members["on success"] == {"notify"} and members["on failure"] == {"alert"}


def test_level_groups_tally_the_states_of_a_run(tmp_path):
    plan = plans.layered_plan()
    states = {s["id"]: "succeeded" for s in plan["steps"] if s["level"] <= 2}
    states["r2c7"] = "failed"
    states["r3c1"] = "running"
    svg = render(tmp_path, plan, states)
    assert text(svg["node"]["level 1"]).endswith("proxy.work ×39 ✓ 39")
    assert text(svg["node"]["level 2"]).endswith("proxy.work ×39 ✓ 38 ✗ 1")
    assert text(svg["node"]["level 3"]).endswith("+7 edges from earlier levels ▶ 1 … 38")
    assert shape(svg["node"]["level 2"]).get("fill") == STATES["failed"][0].lower()
    assert shape(svg["node"]["level 3"]).get("fill") == STATES["running"][0].lower()
    assert shape(svg["node"]["r2c0"]).get("fill") == STATES["succeeded"][0].lower()
    assert text(svg["node"]["weft:legend"]) == "succeeded failed running"


def test_a_long_chain_groups_bands_of_levels(tmp_path):
    plan = plans.chain_plan(3000)
    assert len(plan["critical_path"]) == 3000
    svg = render(tmp_path, plan)
    assert len(svg["node"]) == 60
    assert text(svg["node"]["levels 0–49"]) == "levels 0–49 · 50 steps c0, c1, c2, … +47 proxy.work ×49 · proxy.c0 ×1"
    edge = svg["edge"]["levels 0–49->levels 50–99"]
    assert text(edge) == "out → input" and shape(edge).get("stroke-width") == "2.4"


def test_many_sub_flows_still_too_many_nodes_group_by_level(tmp_path):
    plan = plans.generated_plan(groups=400, size=5)
    svg = render(tmp_path, plan)
    chain = [f"g000/s0{i}" for i in range(5)]
    assert set(svg["node"]) == {"start", "done", *chain} | {f"level {k}" for k in range(1, 6)}
    assert text(svg["node"]["g000/s00"]) == "g000/s00 proxy.s00"  # no sub-flow cluster: the whole id
    assert text(svg["node"]["level 1"]) == (
        "level 1 · 399 steps g001/s00, g002/s00, g003/s00, … +396 proxy.s00 ×399 in 399 sub-flows"
    )
    assert text(svg["edge"]["start->level 1"]) == "399 edges"
    assert text(svg["edge"]["level 5->done"]) == "399 after"
    assert shape(svg["edge"]["g000/s04->done"]).get("stroke-width") == "2.4"


def test_level_groups_are_deterministic():
    plan = plans.layered_plan()
    states = {s["id"]: ("failed" if i % 7 else "succeeded") for i, s in enumerate(plan["steps"][:200])}
    first = to_dot(plan, states)
    again = msgpack.unpackb(msgpack.packb(copy.deepcopy(plan)))
    assert to_dot(again, dict(reversed(states.items()))) == first
    assert '"level 3" -> "level 4" [label="77 edges"]' in first
    assert to_dot(plan, expand=True).count(" [") > 420  # expanded: every step drawn
