"""The LMDB backend's key schema: every database, every key, built and read here only.

Run ids are 26 ASCII characters, so keys that start with one need no separator.

    runs      <run>                     run record
    plans     <run>                     the run's own copy of its Plan
    steps     <run><step id>            step record
    events    <run><u64 BE seq>         append-only history, seq from 1
    indexes   state\\0<state>\\0<run>, flow\\0<flow>\\0<run>, tag\\0<tag>\\0<run>,
              user\\0<user>\\0<run>, schedule\\0<name>\\0<run>, label\\0<label, first 400 bytes>\\0<run>,
              result\\0<succeeded|failed|cancelled|rolled back>\\0<run> (ended runs),
              started\\0<u64 BE µs><run>, ended\\0<u64 BE µs><run>,
              child\\0<parent run><step>\\0<u32 BE index><run> (sub-runs of an `each` step),
              top\\0\\0<run> (runs that are not sub-runs)
    leases    <run>                     the owning process
              lock\\0<name>              the run holding a flow's `lock`
    requests  <run><name>               cancel / signal requests for a live owner
    queue     at\\0<u64 BE µs><run>      runs a worker should pick up, by when
              of\\0<run>                 that time (µs), to move or drop the entry
    timers    <u64 BE µs due><run><step>\\0<kind>   steps' next poll, retry, deadline
    feed      <u64 BE last place>       [run, seq, place, count]: every run's events in commit order, one
                                        entry for the `count` events one write appended to a run's history:
                                        seq, seq+1, ... at place, place+1, ... ([run, seq, place]: one event)
    schedules <name>                    schedule record (weft.runtime.core.schedule)
    tallies   <run>                     {state: the run's step records in it}, kept on write (tally.py)
    meta      <name>                    format, indexes (store format and index keys versions), ...
"""

from __future__ import annotations

import struct
from typing import Any

from weft.runtime import ids
from weft.runtime.core.states import outcome
from weft.runtime.core.timers import Timer, TimerKind, step_timers
from weft.runtime.stores.query import LABEL_KEY_MAX, micros

DATABASES = (
    "meta",
    "runs",
    "plans",
    "steps",
    "events",
    "indexes",
    "leases",
    "requests",
    "queue",
    "timers",
    "feed",
    "schedules",
    "tallies",
)
OWNED = ("plans", "steps", "events", "requests", "leases", "tallies")  # databases whose keys start with <run>
ID_LEN = 26
INDEX_VERSION = 4  # the index keys index_keys() makes; older stores are brought up to date by catalog.py
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
LOCK = b"lock\0"
TOP = b"top\0\0"
QUEUE_AT = b"at\0"
QUEUE_OF = b"of\0"


def shown(db: str, key: bytes) -> str:
    """A key as reports name it: `db:` then printable text, NULs as `:`, other bytes escaped."""
    text = "".join(chr(b) if 32 <= b < 127 else ":" if b == 0 else f"\\x{b:02x}" for b in key)
    return f"{db}:{text}"


def run_id_of(key: bytes) -> str | None:
    """The run id `key` starts with, or None if its first ID_LEN bytes are not one."""
    head = key[:ID_LEN]
    text = head.decode("ascii", "replace")
    return text if len(text) == ID_LEN and ids.is_id_text(text) else None


def run_key(run_id: str) -> bytes:
    return run_id.encode()


def step_key(run_id: str, step_id: str) -> bytes:
    return run_id.encode() + step_id.encode()


def step_of(key: bytes) -> str:
    return key[ID_LEN:].decode()


def seq_key(run_id: str, seq: int) -> bytes:
    return run_id.encode() + _U64.pack(seq)


def seq_of(key: bytes) -> int:
    return _U64.unpack_from(key, ID_LEN)[0]


def place_key(place: int) -> bytes:
    return _U64.pack(place)


def place_of(key: bytes) -> int | None:
    """The feed place a key holds, or None if it is not one."""
    return _U64.unpack(key)[0] if len(key) == _U64.size else None


def feed_entry(run_id: str, seq: int, place: int, count: int) -> list:
    """The feed entry of `count` events of run `run_id` from `seq`, at places from `place` on."""
    return [run_id, seq, place] if count == 1 else [run_id, seq, place, count]


def feed_span(entry: Any) -> tuple[int, str, int, int] | None:
    """(first place, run id, first seq, count) of a decoded feed entry, or None if it is not one."""
    if not (isinstance(entry, list) and len(entry) in (3, 4)):
        return None
    rid, seq, place, *more = entry
    count = more[0] if more else 1
    fits = isinstance(rid, str) and all(type(n) is int and n >= 1 for n in (seq, place, count))
    return (place, rid, seq, count) if fits and place + count <= 1 << 64 else None


def feed_key(span: tuple[int, str, int, int]) -> bytes:
    """The key a feed entry is stored under: the place of its last event."""
    return place_key(span[0] + span[3] - 1)


def lock_key(name: str) -> bytes:
    return LOCK + name.encode()


def request_key(run_id: str, name: str) -> bytes:
    return run_id.encode() + name.encode()


def request_of(key: bytes) -> str:
    return key[ID_LEN:].decode()


def meta_key(name: str) -> bytes:
    return name.encode()


# -- indexes -------------------------------------------------------------------------------


def index_prefix(field: str, value: str | None = None) -> bytes:
    return field.encode() + b"\0" + (b"" if value is None else value.encode() + b"\0")


def child_prefix(parent: str, step: str | None = None) -> bytes:
    """The child index keys of one `each` step of `parent`, or of all of them."""
    return b"child\0" + parent.encode() + (b"" if step is None else step.encode() + b"\0")


def child_of(key: bytes) -> tuple[int, str]:
    """(item index, run id) of a child index key."""
    return _U32.unpack_from(key, len(key) - ID_LEN - _U32.size)[0], key[-ID_LEN:].decode()


def time_key(field: str, t: float) -> bytes:
    return field.encode() + b"\0" + _U64.pack(micros(t))


def index_keys(run: dict) -> set[bytes]:
    """The index entries a run record should have."""
    rid = run["id"].encode()
    keys = {
        index_prefix("state", run["state"]) + rid,
        index_prefix("flow", run["flow"]) + rid,
        time_key("started", run["created"]) + rid,
        index_prefix("user", run.get("user") or "") + rid,
        b"label\0" + (run.get("label") or "").encode()[:LABEL_KEY_MAX] + b"\0" + rid,
    }
    result = outcome(run)
    if result is not None:
        keys.add(index_prefix("result", result) + rid)
    keys.update(index_prefix("tag", tag) + rid for tag in run.get("tags") or ())
    if run.get("schedule"):
        keys.add(index_prefix("schedule", run["schedule"]["name"]) + rid)
    if run.get("ended") is not None:
        keys.add(time_key("ended", run["ended"]) + rid)
    if run.get("parent"):
        keys.add(child_prefix(run["parent"]["run"], run["parent"]["step"]) + _U32.pack(run["parent"]["index"]) + rid)
    else:
        keys.add(TOP + rid)
    return keys


def after(prefix: bytes) -> bytes:
    """The first key greater than every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


# -- the work queue ------------------------------------------------------------------------


def queue_at(run_id: str, at: int) -> bytes:
    return QUEUE_AT + _U64.pack(at) + run_id.encode()


def queue_of(run_id: str) -> bytes:
    return QUEUE_OF + run_id.encode()


def queue_time(key: bytes) -> int:
    return _U64.unpack_from(key, len(QUEUE_AT))[0]


# -- timers --------------------------------------------------------------------------------


def timer_keys(run_id: str, step_id: str, rec: dict | None) -> set[bytes]:
    """The timer index entries a step record should have."""
    timers = step_timers(step_id, rec)
    if not timers:  # (most records: every step record written goes through here)
        return set()
    tail = run_id.encode() + step_id.encode() + b"\0"
    return {_U64.pack(micros(tm.due)) + tail + tm.kind.encode() for tm in timers}


def timer_of(key: bytes) -> Timer:
    head, _, kind = key.rpartition(b"\0")
    due = _U64.unpack_from(head)[0] / 1_000_000
    return Timer(due, TimerKind(kind.decode()), head[8 + ID_LEN :].decode(), run=head[8 : 8 + ID_LEN].decode())
