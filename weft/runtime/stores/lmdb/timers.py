"""The persisted timer index: every step's next poll, retry and deadline, ordered by due time.

    timers  <u64 BE µs due><run id><step id>\0<kind>  ->  None

Kinds: "poll" (a suspended polling step's next poll), "retry" (a failed step
waiting out its backoff) and "deadline" (a running or suspended step's
`timeout`, or a signal wait's). The entries are derived from the step records:
`Txn.put_step` adds and removes them as a record changes, so the index always
agrees with the steps, survives a crash with them, and the earliest timer of
the whole store is the first key (`next_due`). A driver keeps its own run's
timers in memory (rebuilt from the step records when it takes a run over);
the index is for whoever looks for runs that need driving.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.store import Txn

_DUE = struct.Struct(">Q")
_RUN = 26  # run id length


@dataclass(frozen=True, slots=True)
class Timer:
    due: float
    run: str
    step: str
    kind: str


def timer_keys(run_id: str, step_id: str, rec: dict | None) -> set[bytes]:
    """The index entries a step record should have."""
    if rec is None:
        return set()
    state, found = rec["state"], []
    if state == "pending" and rec.get("due") is not None:
        found.append((rec["due"], "retry"))
    if state == "suspended" and rec.get("poll") is not None:
        found.append((rec.get("due") or rec["started"], "poll"))
    if state in ("running", "suspended") and rec.get("deadline") is not None:
        found.append((rec["deadline"], "deadline"))
    tail = run_id.encode() + step_id.encode() + b"\0"
    return {_DUE.pack(max(0, int(due * 1_000_000))) + tail + kind.encode() for due, kind in found}


def update(txn: Txn, run_id: str, step_id: str, old: dict | None, new: dict | None) -> None:
    """Bring the step's index entries from what `old` had to what `new` needs."""
    before, after = timer_keys(run_id, step_id, old), timer_keys(run_id, step_id, new)
    for key in before - after:
        txn.delete("timers", key)
    for key in after - before:
        txn.put("timers", key, None)


def _timer(key: bytes) -> Timer:
    head, _, kind = key.rpartition(b"\0")
    due = _DUE.unpack_from(head)[0] / 1_000_000
    return Timer(due, head[8 : 8 + _RUN].decode(), head[8 + _RUN :].decode(), kind.decode())


def next_due(txn: Txn) -> Timer | None:
    """The earliest timer in the store (one cursor read), or None."""
    for key in txn.keys("timers", b""):
        return _timer(key)
    return None


def due(txn: Txn, now: float) -> Iterator[Timer]:
    """The timers due at `now`, earliest first."""
    for key in txn.keys("timers", b""):
        timer = _timer(key)
        if timer.due > now:
            return
        yield timer
