"""An `each` step waiting for its sub-runs: what to release next, when it is done, how it came out.

Pure decisions over what the store says about the sub-runs (no I/O): the
engine (engine/each.py) reads the sub-runs, asks `look`, makes the ones it
says to release, and reports the answer as a polling step's poll would.

A sub-run is *active* while it is pending or running; it holds one of the
step's `concurrency` slots. A paused sub-run gives its slot back (it waits
for a person) but keeps the step from finishing: the step ends only once
every item has a sub-run that ended or paused, and it succeeds only if all
of them succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from weft.runtime.core.states import RunState

ACTIVE = frozenset({RunState.PENDING, RunState.RUNNING})
SHOWN = 5  # sub-runs a failure message names


@dataclass(frozen=True, slots=True)
class Child:
    """What the parent needs of one sub-run."""

    index: int
    run: str
    state: str
    label: str | None = None
    error: str | None = None  # the sub-run's own error ("step dhcp was interrupted")
    ended: float | None = None
    rolled_back: bool = False
    result: dict | None = None  # what the sub-run returned (its run record's `result`)


@dataclass(frozen=True, slots=True)
class Look:
    """What one look at the sub-runs found: items to release now, and the outcome once there is one."""

    release: list[int]  # item indexes to make a sub-run for, now
    progress: float  # the share of items whose sub-run succeeded
    done: bool  # every item's sub-run ended or paused, and nothing is left to release
    outputs: dict | None = None  # when done and every sub-run succeeded (see `outputs`)
    failure: str | None = None  # when done and some did not


class Tally:
    """The sub-runs made so far, by item, with how many are active and succeeded kept as they change, so a
    look at 10,000 of them costs what changed since the last one, not a pass over them all."""

    __slots__ = ("active", "children", "succeeded", "top")

    def __init__(self, children: Iterable[Child] = ()) -> None:
        self.children: dict[int, Child] = {}
        self.active = self.succeeded = 0
        self.top = -1  # the highest item with a sub-run
        for child in children:
            self.put(child)

    def put(self, child: Child) -> None:
        """What sub-run `child` is now (made, or read again)."""
        old = self.children.get(child.index)
        if old is not None:
            self._count(old, -1)
        self.children[child.index] = child
        self._count(child, +1)
        self.top = max(self.top, child.index)

    def _count(self, child: Child, sign: int) -> None:
        if child.state in ACTIVE:
            self.active += sign
        elif child.state == RunState.SUCCEEDED:
            self.succeeded += sign

    def look(self, total: int, concurrency: int | None, refused: dict[int, str], results: bool = False) -> Look:
        """See `look`."""
        children, active, succeeded = self.children, self.active, self.succeeded
        missing = total - len(children) - sum(i not in children for i in refused)
        release = _missing(total, self, refused, max(0, limit(concurrency, total) - active)) if missing else []
        progress = round(succeeded / total, 4) if total else 1.0
        if active or missing:
            return Look(release, progress, False)
        if succeeded == total:
            return Look([], progress, True, outputs=outputs(total, children, results))
        return Look([], progress, True, failure=failure(total, children, refused))


def limit(concurrency: int | None, total: int) -> int:
    """How many sub-runs may be active at once."""
    return max(1, int(concurrency or total or 1))


def look(
    total: int, concurrency: int | None, children: dict[int, Child], refused: dict[int, str], results: bool = False
) -> Look:
    """Decide from the sub-runs made so far (`children`, by item) and the items whose sub-run
    could not be made (`refused`: item -> why, e.g. a lock held by another run). `results`: the
    body returns a result, collected into the step's outputs."""
    return Tally(children.values()).look(total, concurrency, refused, results)


def _missing(total: int, tally: Tally, refused: dict[int, str], room: int) -> list[int]:
    """The first `room` items (lowest first) with no sub-run and not refused. Sub-runs are made lowest
    first, so they are usually items 0 to n-1: then these are the next ones, found without a scan."""
    if not room:
        return []
    children, made = tally.children, len(tally.children)
    if not refused and tally.top == made - 1:
        return list(range(made, min(total, made + room)))
    found = []
    for i in range(total):
        if i not in children and i not in refused:
            found.append(i)
            if len(found) == room:
                break
    return found


def outputs(total: int, children: dict[int, Child], results: bool) -> dict:
    """An `each` step's outputs: counts, and with `results` each item's result in item order (none for
    an item whose sub-run did not succeed)."""
    succeeded = sum(c.state == RunState.SUCCEEDED for c in children.values())
    out: dict = {"total": total, "succeeded": succeeded, "failed": total - succeeded}
    if results:
        found = [children.get(i) for i in range(total)]
        out["results"] = [c.result if c is not None and c.state == RunState.SUCCEEDED else None for c in found]
    return out


def failure(total: int, children: dict[int, Child], refused: dict[int, str]) -> str:
    """`2 of 5 sub-runs did not succeed: item 3 (RUN, paused: step x was interrupted), ...`."""
    bad = []
    for i in sorted(set(children) | set(refused)):
        c = children.get(i)
        if c is None:
            bad.append(f"item {i + 1} (not started: {refused[i]})")
        elif c.state != RunState.SUCCEEDED:
            why = f"{c.state}: {c.error}" if c.error else c.state
            bad.append(f"{c.label or f'item {i + 1}'} ({c.run}, {why})")
    shown = ", ".join(bad[:SHOWN]) + (", ..." if len(bad) > SHOWN else "")
    return f"{len(bad)} of {total} sub-runs did not succeed: {shown}"


def item_line(index: int, total: int, run: str, state: str, error: str | None = None) -> str:
    """The parent's log line when a sub-run stops: `item 42 of 100: run RUN succeeded`."""
    return f"item {index + 1} of {total}: run {run} {state}" + (f": {error}" if error else "")


def to_roll_back(children: list[Child]) -> list[Child]:
    """The sub-runs a rollback of the parent undoes, in reverse order of completion.

    Sub-runs that stopped without ending (paused) come first: they are the
    latest; a sub-run already rolled back is left alone.
    """
    todo = [c for c in children if not c.rolled_back and c.state not in ACTIVE]
    return sorted(todo, key=lambda c: (c.ended is not None, -(c.ended or 0.0), -c.index))
