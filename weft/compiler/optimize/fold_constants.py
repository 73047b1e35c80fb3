"""Fold constant and pure sub-expressions into literal values.

`"${name}.${domain}"` with `domain` defaulted stays an interpolation of
`name` with the literal `.example.com`; anything that reads no parameter and
no step output becomes `["lit", value]`, computed by the runtime's evaluator.
"""

from __future__ import annotations

import math

import networkx as nx

from weft.compiler.limits import MAX_INT
from weft.plan import expr as px


def fold_constants(graph: nx.DiGraph, ctx=None) -> nx.DiGraph:
    for _node, fields in graph.nodes(data=True):
        fields["inputs"] = {k: fold(e) for k, e in fields["inputs"].items()}
        for kind in ("when", "queue"):
            if fields.get(kind) is not None:
                fields[kind] = fold(fields[kind])
        if fields.get("undo"):
            fields["undo"]["inputs"] = {k: fold(e) for k, e in fields["undo"]["inputs"].items()}
        if fields.get("each"):
            fields["each"]["items"] = fold(fields["each"]["items"])
    g = graph.graph
    g["returns"] = {k: fold(e) for k, e in g["returns"].items()}
    g["locks"] = [fold(e) for e in g["locks"]]
    if g.get("label") is not None:
        g["label"] = fold(g["label"])
    for p in g["params"]:
        if p["default"] is not None:
            p["default"] = fold(p["default"])
    return graph


def fold(e: list) -> list:
    tag = e[0]
    if tag in ("lit", "param", "step"):
        return e
    if tag == "fmt":
        parts: list = []
        for p in e[1]:
            p = p if isinstance(p, str) else fold(p)
            if isinstance(p, list) and p[0] == "fmt":
                parts += p[1]  # a nested interpolation is spliced in
            else:
                parts.append(px.show(p[1]) if isinstance(p, list) and p[0] == "lit" else p)
        parts = _merge(parts)
        if all(isinstance(p, str) for p in parts):
            return ["lit", "".join(parts)]
        return ["fmt", parts]
    folded = px.map_children(e, fold)
    if all(c[0] == "lit" for c in px.children(folded)):
        try:
            value = px.evaluate(folded, px.Env())
        except px.EvalError:
            return folded  # the runtime reports it where it happens
        return ["lit", value] if _storable(value) else folded
    return folded


def _storable(value: object) -> bool:
    """Whether a folded value fits a Plan: msgpack integers are 64-bit, floats finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, int):
        return -(2**63) <= value <= MAX_INT
    return math.isfinite(value)


def _merge(parts: list) -> list:
    out: list = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        elif p != "":
            out.append(p)
    return out
