"""Plan pass: an optimized flow graph -> the versioned, msgpack-safe Plan.

docs/plan-format.md documents every field; the runtime reads nothing else.
"""

from __future__ import annotations

import networkx as nx

from weft.compiler.lower import secret_inputs
from weft.plan.schema import PLAN_FORMAT, PLAN_VERSION, Plan

_STEP_KEYS = (
    "name",
    "phase",
    "kind",
    "action",
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
    "level",
    "remaining",
    "critical",
)


def build_plan(graph: nx.DiGraph, search_path: list[str]) -> Plan:
    g = graph.graph
    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["order"]))
    steps = []
    for n in order:
        fields = graph.nodes[n]
        step = {"id": n, **{k: fields[k] for k in _STEP_KEYS}}
        step["on_error"] = step["on_error"] or g["on_error"]
        preds = list(graph.predecessors(n))
        step["deps"] = sorted(p for p in preds if graph.nodes[p]["phase"] == fields["phase"])
        step["data"] = [
            {"from": p, "field": field, "to": into} for p in sorted(preds) for field, into in graph.edges[p, n]["data"]
        ]
        step["after"] = sorted(p for p in preds if graph.edges[p, n]["control"])
        # marked where it was lowered (an inlined flow's secret parameters), or reading this flow's own
        step["secret"] = sorted(
            set(fields.get("secret", ())) | set(secret_inputs(step["inputs"], g.get("secrets", set())))
        )
        steps.append(step)
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "flow": g["flow"],
        "file": g["file"],
        "search_path": list(search_path),
        "params": g["params"],
        "results": g["results"],
        "returns": g["returns"],
        "label": g["label"],
        "tags": g["tags"],
        "locks": g["locks"],
        "on_error": g["on_error"],
        "steps": steps,
        "critical_path": g.get("critical_path", []),
        "extensions": g["extensions"],
    }
