"""How the LMDB backend stores a run's Plan: a big one with its steps in chunks, so that a page of a
50,000-step run reads a few step specs without decoding the 16 MB of all of them.

A Plan of at most CHUNK steps is stored as it is. A bigger one is stored as

    {"head": the Plan with "steps": None, "ids": [step id, ...] in plan order,
     "phases": [[phase, n], ...], "kinds": [[kind, n], ...] (runs of n steps in a row),
     "chunks": [msgpack bytes of CHUNK step specs, ...]}

and `whole` puts it back together (its keys in their order). A chunk is one
group of weft.plan.shared: its steps packed when the Plan given shares its
values (as the plan cache gives it: a 50,000-step flow's Plan is 2 MB stored,
not 15), read back sharing them; else (and in stores written before) the list
of its specs. All these forms are read.
"""

from __future__ import annotations

from collections.abc import Iterable

from weft.plan import shared
from weft.runtime import records
from weft.runtime.stores.port import Outline, runs

CHUNK = shared.GROUP  # step specs per chunk


def stored(plan: dict) -> dict:
    """What is stored for `plan`."""
    steps = plan["steps"]
    if len(steps) <= CHUNK:
        return plan
    return {
        "head": {**plan, "steps": None},
        "ids": [s["id"] for s in steps],
        "phases": runs(s["phase"] for s in steps),
        "kinds": runs(s["kind"] for s in steps),
        "chunks": [records.pack(group) for group in shared.pack_steps(steps)],
    }


def chunked(value: dict) -> bool:
    """Whether a stored value is a big Plan's chunked form."""
    return "chunks" in value and "head" in value


def whole(value: dict) -> dict:
    """The Plan a stored value holds."""
    if not chunked(value):
        return value
    return {**value["head"], "steps": [s for chunk in value["chunks"] for s in _chunk(chunk)]}


def outline(value: dict) -> tuple[dict, Outline]:
    """The Plan without its steps, and the outline of its steps (without expanding the stored one)."""
    if not chunked(value):
        return {k: v for k, v in value.items() if k != "steps"}, Outline.of(value["steps"])
    head = {k: v for k, v in value["head"].items() if k != "steps"}
    return head, Outline(list(value["ids"]), value["phases"], value["kinds"])


def step_ids(value: dict) -> list[str]:
    """The ids of the Plan's steps, in plan order."""
    if not chunked(value):
        return [s["id"] for s in value.get("steps", ())]
    return value["ids"]


def specs(value: dict, wanted: Iterable[str]) -> dict[str, dict]:
    """The specs of the steps `wanted` (those the Plan has), in plan order; only their chunks are decoded."""
    want = set(wanted)
    if not chunked(value):
        return {s["id"]: s for s in value["steps"] if s["id"] in want}
    chunks, left = set(), len(want)
    for i, sid in enumerate(value["ids"]):  # (a page's steps are near the start: the rest is not looked at)
        if sid in want:
            chunks.add(i // CHUNK)
            left -= 1
            if not left:
                break
    chunks = sorted(chunks)
    return {s["id"]: s for c in chunks for s in _chunk(value["chunks"][c]) if s["id"] in want}


def _chunk(data: bytes) -> list[dict]:
    """The step specs of a stored chunk."""
    return shared.unpack_group(records.unpack(data))
