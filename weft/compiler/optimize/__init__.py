"""Optimizer passes over a lowered flow graph, in the order they run.

Each pass is one module named after the one function it exports, taking and
returning the graph: `pass_name(graph, ctx) -> graph`. Tests can run one alone.
"""

from __future__ import annotations

from weft.compiler.optimize.annotate_paths import annotate_paths
from weft.compiler.optimize.fold_constants import fold_constants
from weft.compiler.optimize.inline_calls import inline_calls
from weft.compiler.optimize.reduce_control_edges import reduce_control_edges

PASSES = (inline_calls, fold_constants, reduce_control_edges, annotate_paths)


def optimize(graph, ctx):
    for run in PASSES:
        graph = run(graph, ctx)
    return graph
