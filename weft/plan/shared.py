"""A Plan's step specs written once for what they have in common, and read back sharing it.

The steps of a big flow differ in little (their id, inputs and source
position): written out one by one, 50,000 `std.echo` steps are 19 MB of
msgpack and 133 MB of Python objects. `pack_steps` writes them in groups of
GROUP steps, each as its first step (the base) and, for every step, only the
values that are not the base's; `unpack_steps` makes every step a copy of its
group's base updated with its own values, so that the values they have in
common are the same objects (5 MB and 76 MB for those steps).

A Plan is read-only once compiled: the runtime never writes into a spec (a
test holds it to that). The values a step hands to action code as they are
(its `inputs`, `undo` and `each`: their literal lists and records) are its own
all the same, unless the Plan given already shared them. With `equal`, a value
is shared when it is exactly the base's (1, 1.0 and True are not the same,
nor records whose keys are in another order): for a Plan just compiled, whose steps share
nothing. Without, only the base's very objects are: cheap, for a Plan that was
unpacked (from the plan cache or a store). A step whose keys are not the
base's is written whole.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import compress
from operator import is_not
from typing import Any

import msgpack

GROUP = 256  # steps per group: the LMDB store's chunks of a big Plan are these groups
_OWN = frozenset({"id", "inputs", "undo", "each"})  # never shared (see above)
_SHARED = (dict, list)


def pack_steps(steps: list[dict], equal: bool = False) -> list[dict | list[dict]]:
    """`steps` in groups of GROUP: {"base": the group's first step, "own": [each step's own values, or [the step]
    when its keys are not the base's]}. Without `equal`, a group whose second step shares no list or record with
    its first is left as the list of its steps: a Plan built by hand shares nothing worth the time."""
    return [_group(steps[i : i + GROUP], equal) for i in range(0, len(steps), GROUP)]


def pack_plan(plan: dict) -> bytes:
    """`plan` as msgpack, its steps packed (`equal`: as for a Plan just compiled)."""
    return msgpack.packb({**plan, "steps": pack_steps(plan["steps"], equal=True)}, use_bin_type=True)


def unpack_plan(data: bytes) -> dict:
    """The Plan `pack_plan` wrote, its steps sharing what they have in common."""
    plan = msgpack.unpackb(data, raw=False)
    return {**plan, "steps": unpack_steps(plan["steps"])}


def unpack_steps(groups: list[dict | list[dict]]) -> list[dict]:
    """The step specs `pack_steps` wrote, the values each has of its group's base shared with it."""
    steps: list[dict] = []
    for group in groups:
        steps += unpack_group(group)
    return steps


def unpack_group(group: dict | list[dict]) -> list[dict]:
    """The step specs of one group."""
    if type(group) is list:
        return group
    base = group["base"]
    return [{**base, **own} if type(own) is dict else own[0] for own in group["own"]]


def _group(steps: list[dict], equal: bool) -> dict | list[dict]:
    base = steps[0]
    keys, values = list(base), list(base.values())
    if (
        not equal
        and len(steps) > 1
        and not any(v is b and type(v) in _SHARED for v, b in zip(steps[1].values(), values))
    ):
        return steps
    exact: dict[str, str] = {}  # the repr of the base's containers, made when first compared
    own = []
    for step in steps:
        if list(step) != keys:
            own.append([step])
            continue
        differ = compress(keys, map(is_not, step.values(), values))  # (the base's very objects are shared as they are)
        own.append({k: step[k] for k in differ if not equal or k in _OWN or not _same(step[k], base[k], k, exact)})
    return {"base": base, "own": own}


def _same(value: Any, base: Any, key: str, exact: dict[str, str]) -> bool:
    """Whether `value` (of `key`) is exactly the base's, so that it may be the base's object."""
    kind = type(value)
    if kind is not type(base) or value != base:
        return False
    if kind is float:
        return math.copysign(1.0, value) == math.copysign(1.0, base)  # (-0.0 == 0.0)
    if kind is dict or kind is list:  # (the repr of plain data tells what msgpack tells apart, and is quicker)
        if key not in exact:
            exact[key] = repr(base)
        return repr(value) == exact[key]
    return True


@contextmanager
def uncollected() -> Iterator[None]:
    """No garbage collection in the block: making, packing or reading a big Plan (or a Machine over one) allocates
    containers by the hundred thousand and frees none, so collections in between only traverse them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
