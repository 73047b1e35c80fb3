"""How the LMDB backend stores a run's Plan: a big one with its steps in chunks, so that a page of a
50,000-step run reads a few step specs without decoding the 16 MB of all of them.

A Plan of at most CHUNK steps is stored as it is. A bigger one is stored as

    {"head": the Plan with "steps": None, "ids": [step id, ...] in plan order,
     "phases": [[phase, n], ...], "kinds": [[kind, n], ...] (runs of n steps in a row),
     "chunks": [msgpack bytes of CHUNK step specs, ...]}

and `whole` puts it back together (its keys in their order). Both forms are read.
"""

from __future__ import annotations

from collections.abc import Iterable

from weft.runtime import records

CHUNK = 256  # step specs per chunk


def stored(plan: dict) -> dict:
    """What is stored for `plan`."""
    steps = plan["steps"]
    if len(steps) <= CHUNK:
        return plan
    return {
        "head": {**plan, "steps": None},
        "ids": [s["id"] for s in steps],
        "phases": _runs(s["phase"] for s in steps),
        "kinds": _runs(s["kind"] for s in steps),
        "chunks": [records.pack(steps[i : i + CHUNK]) for i in range(0, len(steps), CHUNK)],
    }


def _runs(values: Iterable[str]) -> list[list]:
    """[[value, how many in a row], ...]: a 50,000-step fan-out's phases are one run."""
    found: list[list] = []
    for v in values:
        if found and found[-1][0] == v:
            found[-1][1] += 1
        else:
            found.append([v, 1])
    return found


def _expand(runs: list[list]) -> list[str]:
    return [v for v, n in runs for _ in range(n)]


def _chunked(value: dict) -> bool:
    return "chunks" in value and "head" in value


def whole(value: dict) -> dict:
    """The Plan a stored value holds."""
    if not _chunked(value):
        return value
    return {**value["head"], "steps": [s for chunk in value["chunks"] for s in records.unpack(chunk)]}


def outline(value: dict) -> tuple[dict, list[tuple[str, str, str]]]:
    """The Plan without its steps, and (id, phase, kind) of each step in plan order."""
    if not _chunked(value):
        return {k: v for k, v in value.items() if k != "steps"}, [
            (s["id"], s["phase"], s["kind"]) for s in value["steps"]
        ]
    head = {k: v for k, v in value["head"].items() if k != "steps"}
    return head, list(zip(value["ids"], _expand(value["phases"]), _expand(value["kinds"])))


def step_ids(value: dict) -> list[str]:
    """The ids of the Plan's steps, in plan order."""
    if not _chunked(value):
        return [s["id"] for s in value.get("steps", ())]
    return value["ids"]


def specs(value: dict, wanted: Iterable[str]) -> dict[str, dict]:
    """The specs of the steps `wanted` (those the Plan has), in plan order; only their chunks are decoded."""
    want = set(wanted)
    if not _chunked(value):
        return {s["id"]: s for s in value["steps"] if s["id"] in want}
    chunks = sorted({i // CHUNK for i, sid in enumerate(value["ids"]) if sid in want})
    return {s["id"]: s for c in chunks for s in records.unpack(value["chunks"][c]) if s["id"] in want}
