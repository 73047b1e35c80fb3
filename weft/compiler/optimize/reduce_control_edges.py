"""Drop control edges that other paths already imply.

Only edges that carry no data are candidates, and only those are reduced: a
full transitive reduction of a 10,000-node graph is far too slow. Ancestor
sets are Python ints used as bitsets, built once in topological order.
"""

from __future__ import annotations

import networkx as nx


def reduce_control_edges(graph: nx.DiGraph, ctx=None) -> nx.DiGraph:
    control = [(u, v) for u, v, d in graph.edges(data=True) if d["control"]]
    if not control:
        return graph
    order = list(nx.topological_sort(graph))
    bit = {n: 1 << i for i, n in enumerate(order)}
    ancestors: dict = {}
    for n in order:
        acc = 0
        for p in graph.predecessors(n):
            acc |= ancestors[p] | bit[p]
        ancestors[n] = acc
    redundant = [(u, v) for u, v in control if any(p != u and ancestors[p] & bit[u] for p in graph.predecessors(v))]
    graph.remove_edges_from(redundant)
    return graph
