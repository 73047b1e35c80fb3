"""Inline calls of other flows (outside `each`) into the caller's graph.

The callee's steps join the caller with ids prefixed by the call step's id
(`host/dhcp`); its parameters become the call's argument expressions, a
reference to the call's outputs becomes the callee's `return` expressions,
and its locks are held by the caller.
"""

from __future__ import annotations

import copy

import networkx as nx

from weft.plan import expr as px
from weft.compiler.lower import connect


def inline_calls(graph: nx.DiGraph, ctx) -> nx.DiGraph:
    calls = [n for n, d in graph.nodes(data=True) if d["kind"] == "call"]
    if not calls:
        return graph
    for call in calls:
        _inline(graph, call, ctx.inlined(graph.nodes[call]["call"]))
    _renumber(graph)
    return graph


def _inline(g: nx.DiGraph, call: str, callee: nx.DiGraph) -> None:
    site = g.nodes[call]
    defaults = {p["name"]: p["default"] for p in callee.graph["params"]}
    prefix = f"{call}/"

    def rewrite(e: list, expanding: frozenset = frozenset()) -> list:
        if e[0] == "param":
            if e[1] in site["inputs"]:
                return site["inputs"][e[1]]
            default = defaults.get(e[1])
            if default is None or e[1] in expanding:
                return ["lit", None]
            return rewrite(default, expanding | {e[1]})
        if e[0] == "step":
            return ["step", prefix + e[1], e[2]]
        return px.map_children(e, lambda c: rewrite(c, expanding))

    added = []
    for node, fields in callee.nodes(data=True):
        new = copy.deepcopy(fields)
        new["inputs"] = {k: rewrite(v) for k, v in new["inputs"].items()}
        for kind in ("when", "queue"):
            if new[kind] is not None:
                new[kind] = rewrite(new[kind])
        if site["when"] is not None:
            new["when"] = site["when"] if new["when"] is None else ["and", site["when"], new["when"]]
        if new["undo"]:
            new["undo"]["inputs"] = {k: rewrite(v) for k, v in new["undo"]["inputs"].items()}
        if new["each"]:
            new["each"]["items"] = rewrite(new["each"]["items"])
        new["phase"] = site["phase"] if fields["phase"] in ("run", "finalize") else fields["phase"]
        new["on_error"] = new["on_error"] or site["on_error"]
        new["origin"] = new["origin"] or site["origin"]
        new["order"] = site["order"] + (1 + fields["order"]) / (len(callee) + 1)
        g.add_node(prefix + node, **new)
        added.append(prefix + node)
    for u, v, d in callee.edges(data=True):
        g.add_edge(prefix + u, prefix + v, **copy.deepcopy(d))
    # Callee finalize steps run after all its run steps, once they are part of the caller:
    # the first finalize steps wait for every last run step (data edges from a run step do
    # not make a finalize step a later one).
    phase = {n: d["phase"] for n, d in callee.nodes(data=True)}
    last_runs = [n for n in callee if phase[n] == "run" and not any(phase[s] == "run" for s in callee.successors(n))]
    for n in callee:
        if phase[n] == "finalize" and not any(phase[p] == "finalize" for p in callee.predecessors(n)):
            for r in last_runs:
                if not g.has_edge(prefix + r, prefix + n):
                    g.add_edge(prefix + r, prefix + n, data=[], control=True)
    roots = [n for n in added if not any(p in added for p in g.predecessors(n))]
    sinks = [n for n in added if not any(s in added for s in g.successors(n))]
    for pred in g.predecessors(call):
        if g.edges[pred, call]["control"]:
            for r in roots:
                g.add_edge(pred, r, data=[], control=True)
    # The callee's locks are taken by the caller; its label and tags serve a caller without its own.
    g.graph["locks"] = g.graph["locks"] + [rewrite(lock) for lock in callee.graph["locks"]]
    if g.graph["label"] is None and callee.graph["label"] is not None:
        g.graph["label"] = rewrite(callee.graph["label"])
    g.graph["tags"] = g.graph["tags"] or list(callee.graph["tags"])
    returns = {k: rewrite(v) for k, v in callee.graph["returns"].items()}
    succs = list(g.successors(call))
    for succ in succs:  # whoever waits for the call waits for all of its steps
        for s in sinks:
            g.add_edge(s, succ, data=[], control=True)
        _replace_outputs(g.nodes[succ], call, returns)
    _replace_flow_outputs(g.graph, call, returns)
    g.remove_node(call)
    for n in added + succs:
        connect(g, n)


def _replace_outputs(fields: dict, call: str, returns: dict) -> None:
    def sub(e: list) -> list:
        if e[0] == "step" and e[1] == call:
            if e[2] is None:
                return ["rec", [[k, v] for k, v in returns.items()]]
            return returns.get(e[2], ["lit", None])
        return px.map_children(e, sub)

    fields["inputs"] = {k: sub(v) for k, v in fields["inputs"].items()}
    for kind in ("when", "queue"):
        if fields.get(kind) is not None:
            fields[kind] = sub(fields[kind])
    if fields["undo"]:
        fields["undo"]["inputs"] = {k: sub(v) for k, v in fields["undo"]["inputs"].items()}
    if fields["each"]:
        fields["each"]["items"] = sub(fields["each"]["items"])


def _replace_flow_outputs(attrs: dict, call: str, returns: dict) -> None:
    """The caller's own `return`, label and locks may read the call's outputs too."""
    holder = {"inputs": attrs["returns"], "when": attrs["label"], "undo": None, "each": None}
    _replace_outputs(holder, call, returns)
    attrs["returns"], attrs["label"] = holder["inputs"], holder["when"]
    locks = {"inputs": dict(enumerate(attrs["locks"])), "when": None, "undo": None, "each": None}
    _replace_outputs(locks, call, returns)
    attrs["locks"] = list(locks["inputs"].values())


def _renumber(g: nx.DiGraph) -> None:
    for i, n in enumerate(sorted(g.nodes, key=lambda n: g.nodes[n]["order"])):
        g.nodes[n]["order"] = i
