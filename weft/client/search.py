"""`Client.runs`: every `weft list` filter, where several values of one field mean any of them.

A store answers queries with one value per field. A query with several values
in some fields is split into one store query per combination; their pages
(each up to offset + limit long, already sorted) are merged in the same sort
order without duplicates. Combinations are disjoint when the fields with
several values hold one value per run (state, result, flow, user, parent):
then the totals add up. Otherwise (a run has several tags, labels contain
several texts, a run holds several locks) the matches are read to count them.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any

from weft.client import limits
from weft.client.errors import InvalidInput
from weft.client.model import Page, RunSummary, summary
from weft.errors import WeftError
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.stores import query as q_

MULTI = ("state", "result", "flow", "tag", "user", "schedule", "label", "parent", "lock")
_ONE_PER_RUN = frozenset({"state", "result", "flow", "user", "schedule", "parent"})


def _values(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple, set)) else None
    if not values or not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"filter {name} takes a string or a list of strings, not {value!r}", field=name)
    return tuple(dict.fromkeys(limits.name(v, name) for v in values))


def _when(value: Any, name: str) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return q_.parse_when(str(value), name)
    except WeftError as e:
        raise InvalidInput(str(e), field=name) from None


def queries(
    *,
    sort: str = "started",
    reverse: bool = False,
    limit: int = 50,
    offset: int = 0,
    sub_runs: bool = False,
    since: Any = None,
    before: Any = None,
    **filters: Any,
) -> tuple[q_.Query, list[q_.Query], bool]:
    """The base Query, one Query per combination of the values asked for, and whether those are disjoint."""
    unknown = sorted(set(filters) - set(MULTI))
    if unknown:
        raise InvalidInput(f"no filter {unknown[0]!r} (filters: {', '.join(MULTI)}, since, before)", field=unknown[0])
    if sort.startswith("-"):
        sort, reverse = sort[1:], not reverse
    base = q_.Query(
        since=_when(since, "since"),
        before=_when(before, "before"),
        sort=sort,
        reverse=reverse,
        limit=limits.page(limit, "limit", least=1),
        offset=limits.page(offset, "offset"),
        sub_runs=sub_runs,
    )
    fields = {name: _values(name, filters.get(name)) for name in MULTI}
    if fields["result"] is not None:
        fields["result"] = tuple(dict.fromkeys(q_.result_name(r) for r in fields["result"]))
    asked = [(name, values) for name, values in fields.items() if values is not None]
    names = [name for name, _ in asked]
    combos = [replace(base, **dict(zip(names, combo))) for combo in itertools.product(*(v for _, v in asked))]
    disjoint = all(name in _ONE_PER_RUN for name, values in asked if len(values) > 1)
    return base, combos, disjoint


def check(q: q_.Query) -> None:
    """InvalidInput naming the option of `q` that no store can answer."""
    probes = {
        "sort": q_.Query(sort=q.sort),
        "state": q_.Query(state=q.state),
        "result": q_.Query(result=q.result),
        "limit": q_.Query(limit=q.limit, offset=q.offset),
    }
    for name, probe in probes.items():
        try:
            q_.check(probe)
        except WeftError as e:
            raise InvalidInput(str(e), field=name) from None


def _summaries(store: Any, runs: list[dict]) -> tuple[RunSummary, ...]:
    """The runs with the processes that hold those not ended (to tell a live owner from a gone one)."""
    with store.read() as t:
        leases = {r["id"]: t.lease(r["id"]) for r in runs if r["state"] not in RUN_ENDED}
    now = time.time()
    return tuple(summary(r, leases.get(r["id"]), now) for r in runs)


def search(store: Any, base: q_.Query, combos: list[q_.Query], disjoint: bool) -> Page:
    """One page of the runs matching any of `combos` (which differ from `base` in their filters only)."""
    if len(combos) == 1:
        page = store.search(combos[0])
        return Page(_summaries(store, page.runs), base.offset, base.limit, page.more, page.total)
    wanted = base.offset + base.limit
    merged: dict[str, dict] = {}
    total = 0
    for q in combos:
        page = store.search(replace(q, offset=0, limit=wanted))
        total += page.total
        for run in page.runs:
            merged.setdefault(run["id"], run)
    if not disjoint:
        total = len({r["id"] for q in combos for r in _all(store, q)})
    runs = q_.order(list(merged.values()), base)[base.offset : wanted]
    return Page(_summaries(store, runs), base.offset, base.limit, base.offset + len(runs) < total, total)


def _all(store: Any, q: q_.Query) -> list[dict]:
    first = store.search(replace(q, offset=0, limit=1))
    return store.search(replace(q, offset=0, limit=max(1, first.total))).runs if first.total else []
