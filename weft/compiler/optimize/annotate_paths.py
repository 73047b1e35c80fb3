"""Annotate each step with its level, the weight of the longest path it
starts, and whether it lies on the critical path."""

from __future__ import annotations

import networkx as nx


def annotate_paths(graph: nx.DiGraph, ctx=None) -> nx.DiGraph:
    order = list(nx.topological_sort(graph))
    nodes = graph.nodes
    for n in order:
        nodes[n]["level"] = max((nodes[p]["level"] + 1 for p in graph.predecessors(n)), default=0)
    for n in reversed(order):
        tail = max((nodes[s]["remaining"] for s in graph.successors(n)), default=0.0)
        nodes[n]["remaining"] = round(nodes[n]["weight"] + tail, 6)
        nodes[n]["critical"] = False
    path: list[str] = []
    step = max(
        (n for n in order if graph.in_degree(n) == 0),
        key=lambda n: (nodes[n]["remaining"], -nodes[n]["order"]),
        default=None,
    )
    while step is not None:
        nodes[step]["critical"] = True
        path.append(step)
        step = max(
            graph.successors(step),
            key=lambda n: (nodes[n]["remaining"], -nodes[n]["order"]),
            default=None,
        )
    graph.graph["critical_path"] = path
    return graph
