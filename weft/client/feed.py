"""Changes: the events of every run in commit order (the store's feed), for displays that follow them live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weft.client.model import Event, Progress
from weft.client.redact import Redactor
from weft.runtime.stores.port import Txn

if TYPE_CHECKING:
    from weft.client.answers import Change


def changes(t: Txn, after: int, limit: int) -> tuple[list[Change], int]:
    """Up to `limit` changes after feed place `after`, and the last place read (`after` if none)."""
    entries = t.feed(after, limit)
    spans: dict[str, tuple[int, int]] = {}  # run -> the first and last seq the entries name
    for _, rid, seq in entries:
        first, last = spans.get(rid, (seq, seq))
        spans[rid] = (min(first, seq), max(last, seq))
    runs: dict[str, tuple[dict | None, dict[int, dict]]] = {}
    for rid, (first, last) in spans.items():
        run = t.run(rid)
        history = Redactor(run).history(t.events(rid, first - 1, last - first + 1)) if run is not None else []
        runs[rid] = (run, dict(history))
    found = []
    for place, rid, seq in entries:
        run, history = runs[rid]
        if seq in history:  # the entries of a deleted run name nothing
            found.append(_change(place, rid, run, Event.of(history[seq], seq)))
    return found, entries[-1][0] if entries else after


def run_changes(t: Txn, run_id: str, after: int, limit: int) -> tuple[dict, list[Change]]:
    """The run's record and up to `limit` changes of its history after seq `after`."""
    run = t.run(run_id)
    history = Redactor(run).history(t.events(run_id, after, max(0, limit)))
    return run, [_change(None, run_id, run, Event.of(e, seq)) for seq, e in history]


def _change(place: int | None, run_id: str, run: dict | None, e: Event) -> Change:
    from weft.client.answers import Change

    return Change(
        place,
        run_id,
        None if run is None else run["state"],
        None if run is None else run.get("progress") or 0.0,
        e,
    )


class Follower:
    """What a display following one run from its history knows: the steps running now and the run's progress."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.running: set[str] = set()

    def progress(self, found: tuple[Change, ...] | list[Change]) -> Progress:
        for c in found:
            e = c.event
            if e.step is not None and e.state is not None:
                (self.running.add if e.state in ("running", "undoing") else self.running.discard)(e.step)
        done = found[-1].progress if found else 0.0
        return Progress(self.run_id, tuple(c.event for c in found), tuple(sorted(self.running)), {}, done or 0.0)
