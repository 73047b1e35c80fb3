"""Every limit the compiler enforces on hostile or oversized input, in one place.

A Plan is stored as msgpack (64-bit integers, at most 511 levels of nesting),
and later passes and the runtime walk expressions, `each` bodies and inlined
flows recursively. So numbers past what a Plan holds and step options past
their ranges are E123, and nesting past these limits is E124, reported once
where it is crossed (the parser's `Nesting` cuts the part past it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from weft.compiler import ast

if TYPE_CHECKING:
    from weft.compiler.diagnostics import Sink

MAX_INT = 2**63 - 1  # integers of a Plan are 64-bit (E123)

# Step options (E123): enough for any real flow, and small enough that the
# runtime's clocks, timers and counters never overflow.
MAX_DURATION = 10 * 365 * 86400  # seconds of a timeout or backoff: ten years
MAX_RETRY = 1000
MAX_CONCURRENCY = 10_000
MAX_WEIGHT = 1_000_000

# Nesting (E124).
MAX_EXPR_DEPTH = 64  # an expression as written, and a let once the lets it reads are put in place
MAX_BLOCK_DEPTH = 16  # sequence, each, finalize and hook blocks inside each other
MAX_TYPE_DEPTH = 32  # list[...], records and `?` inside each other in a type annotation
MAX_LET_NODES = 100_000  # expression parts of a let once the lets it reads are put in place
MAX_CALL_DEPTH = 16  # flows calling flows, each inlined into its caller
MAX_PLAN_STEPS = 10_000  # steps of a flow once the flows it calls are inlined
MAX_PLAN_DEPTH = 300  # lists and dicts of a Plan inside each other: within msgpack's 511, with room for a run

# Time: "did you mean" compares a wrong name with every known one; a file of thousands
# of misspellings among thousands of names would take minutes. Past this many
# comparisons in one compilation, diagnostics come without the suggestion.
MAX_SUGGESTION_WORK = 10_000


class Nesting:
    """How deep each node the parser builds is (bottom-up, as Lark reduces), cutting
    what nests past a limit."""

    def __init__(self, sink: "Sink | None" = None) -> None:
        self.sink = sink
        self.depths: dict[int, tuple[object, int]] = {}  # id(node) -> (node, depth)

    def expr(self, node, *parts):
        hint = "build a value this deep in an action, or pass it in as a flow parameter"
        return self._nested(node, parts, MAX_EXPR_DEPTH, "expression", hint, lambda n: ast.Invalid("", n.span))

    def block(self, node, body):
        hint = "move the inner steps into a flow of their own and call it"
        return self._nested(node, body, MAX_BLOCK_DEPTH, "blocks", hint, lambda n: dataclasses.replace(n, body=()))

    def type(self, node, *parts):
        hint = "name the inner parts' shape with fewer levels, or take `any` and check it in an action"
        return self._nested(node, parts, MAX_TYPE_DEPTH, "type", hint, lambda n: ast.TypeName("any", (), n.span))

    def same(self, node, inner) -> None:
        """`node` is as deep as `inner` (a step as deep as its `each`)."""
        if id(inner) in self.depths:
            self.depths[id(node)] = (node, self.depths[id(inner)][1])

    def _nested(self, node, parts, limit: int, what: str, hint: str, cut):
        """`node`, one level deeper than the deepest of `parts`. Past `limit` it is
        reported (once, where the limit is crossed) and replaced by `cut(node)`, so no
        later pass or run recurses that deep; its enclosing nodes are cut silently."""
        depth = 1 + max((self.depths.get(id(p), (None, 0))[1] for p in parts), default=0)
        if depth > limit:
            if depth == limit + 1:
                self.sink.add("E124", node.span, f"{what} nested more than {limit} levels deep", hint)
            node = cut(node)
        self.depths[id(node)] = (node, depth)
        return node


def plan_nesting(data) -> int:
    """How deeply a Plan's lists and dicts nest (iteratively: it may be deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack += [(x, depth + 1) for x in item]
    return deepest
