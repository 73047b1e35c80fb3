"""Finding runs for `weft list`: filters, sort orders and pages, all through the index keys.

A query never decodes every run record:

- an exact-value filter (state, result, flow, tag, user) is checked for one
  run with one key lookup, `<field>\\0<value>\\0<run>`;
- `parent`, `lock`, a start-time range and a `label` substring each name a set
  read from its own index (child keys, the lock entry, a range of start keys,
  the label keys matched without decoding a run);
- when no such set is given, the exact-value indexes race: they are read side
  by side until the smallest runs out, and that one becomes the set;
- a small candidate set is decoded and sorted in memory; otherwise the sort
  field's index is walked in order, each run checked against the set and the
  lookups, until the page is full. Only the runs on the page are decoded.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Callable, Iterable, Iterator

from weft.errors import WeftError
from weft.runtime.core.states import RUN_ENDED, RUN_STATES, outcome
from weft.runtime.stores.lmdb.store import ID_LEN, INDEX_VERSION, LABEL_KEY_MAX, Store, Txn, index_keys

SORTS = ("started", "ended", "flow", "state", "user", "label")
NEWEST_FIRST = frozenset({"started", "ended"})
RESULTS = ("succeeded", "failed", "cancelled", "rolled back")
_EXACT = ("state", "result", "flow", "tag", "user")
_RACE_LIMIT = 20_000  # an exact-value index bigger than this is checked per run, never read whole
_IN_MEMORY = 2_000  # candidate sets up to this size are decoded and sorted rather than walking an index
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


@dataclass(frozen=True)
class Query:
    """What `weft list` asks for; times are seconds since the epoch, `before` excluded."""

    state: str | None = None
    result: str | None = None
    flow: str | None = None
    tag: str | None = None
    user: str | None = None
    label: str | None = None
    parent: str | None = None
    lock: str | None = None
    since: float | None = None
    before: float | None = None
    sort: str = "started"
    reverse: bool = False
    limit: int = 50
    offset: int = 0
    sub_runs: bool = False  # include the sub-runs of `each` steps (always with `parent`)


@dataclass
class Page:
    runs: list[dict]
    more: bool  # more runs match after this page


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """`2h`, `1d12h`, `30m` (that long ago) or an ISO date or datetime (local time unless it says)."""
    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise WeftError(f"{option} takes a duration (30m, 2h, 7d) or an ISO date or datetime, not {text!r}") from None


def result_name(text: str) -> str:
    """A `--result` value in stored form: `rolled-back` and `rolled_back` mean `rolled back`."""
    name = text.strip().lower().replace("-", " ").replace("_", " ")
    if name not in RESULTS:
        raise WeftError(f"no result {text!r} (results: succeeded, failed, cancelled, rolled-back)")
    return name


def _check(q: Query) -> None:
    if q.sort not in SORTS:
        raise WeftError(f"cannot sort by {q.sort!r} (choose from {', '.join(SORTS)}; --reverse reverses)")
    if q.state is not None and q.state not in RUN_STATES:
        raise WeftError(f"no run state {q.state!r} (states: {', '.join(RUN_STATES)})")
    if q.result is not None and q.result not in RESULTS:
        raise WeftError(f"no result {q.result!r} (results: {', '.join(RESULTS)})")
    if q.limit < 1 or q.offset < 0:
        raise WeftError("--limit must be at least 1 and --offset at least 0")


def search(store: Store, q: Query) -> Page:
    """One page of the runs matching every filter of `q`, in its sort order."""
    _check(q)
    ensure_indexes(store)
    with store.read() as t:
        found = list(islice(_Search(t, q).ids(), q.offset, q.offset + q.limit + 1))
        return Page([t.run(rid.decode()) for rid in found[: q.limit]], len(found) > q.limit)


class _Search:
    """One query inside one read transaction; run ids are handled as bytes."""

    def __init__(self, t: Txn, q: Query) -> None:
        self.t, self.q = t, q
        self.db = t.store.dbs["indexes"]
        self.desc = (q.sort in NEWEST_FIRST) != q.reverse
        self.exact = [f.encode() + b"\0" + v.encode() + b"\0" for f in _EXACT if (v := getattr(q, f)) is not None]
        # Sub-runs are left out unless asked for: a cheap key check per run, never a race entry.
        self.top_only = not q.sub_runs and q.parent is None
        self.needle = q.label.casefold() if q.label is not None else None

    def ids(self) -> Iterator[bytes]:
        q = self.q
        sets = []
        if q.lock is not None:
            sets.append(self._lock_holder())
        if q.parent is not None:
            parent = self.t.find_run(q.parent).encode()
            sets.append({k[-ID_LEN:] for k in self._walk(b"child\0" + parent)})
        if (q.since is not None or q.before is not None) and q.sort != "started":
            sets.append({k[-ID_LEN:] for k in self._started_range(False)})
        if self.needle is not None and q.sort != "label":
            sets.append({k[-ID_LEN:] for k in self._walk(b"label\0") if self._label_hit(k)})
        if not sets and self.exact:
            sets += self._race()
        candidates = set.intersection(*sorted(sets, key=len)) if sets else None
        if candidates is not None and len(candidates) <= _IN_MEMORY:
            return self._sorted(candidates)
        return self._walk_sorted(candidates)

    # -- index keys ----------------------------------------------------------------------

    def _has(self, key: bytes) -> bool:
        return self.t.raw.get(key, db=self.db) is not None

    def _walk(self, low: bytes, high: bytes | None = None, reverse: bool = False) -> Iterator[bytes]:
        """Index keys from `low` (included) to `high` (excluded; default: every key starting with `low`)."""
        high = _after(low) if high is None else high
        cur = self.t.raw.cursor(db=self.db)
        if not reverse:
            if cur.set_range(low):
                for key in cur.iternext(keys=True, values=False):
                    if key >= high:
                        return
                    yield key
            return
        if not (cur.prev() if cur.set_range(high) else cur.last()):
            return
        for key in cur.iterprev(keys=True, values=False):
            if key < low:
                return
            yield key

    def _started_range(self, reverse: bool) -> Iterator[bytes]:
        q = self.q
        low = b"started\0" + (_micros(q.since) if q.since is not None else b"")
        high = b"started\0" + _micros(q.before) if q.before is not None else _after(b"started\0")
        return self._walk(low, high, reverse)

    def _lock_holder(self) -> set[bytes]:
        holder = self.t.lock_holder(self.q.lock)
        run = self.t.run(holder) if holder else None
        return {holder.encode()} if run is not None and run["state"] not in RUN_ENDED else set()

    def _label_hit(self, key: bytes) -> bool:
        text = key[len(b"label\0") : -ID_LEN - 1]
        if self.needle in text.decode("utf-8", "ignore").casefold():
            return True
        if len(text) < LABEL_KEY_MAX:
            return False
        run = self.t.run(key[-ID_LEN:].decode())  # the key holds only the label's first bytes
        return run is not None and self.needle in (run["label"] or "").casefold()

    def _race(self) -> list[set[bytes]]:
        """[the run ids of the smallest exact-value index] if it has at most _RACE_LIMIT entries, else []."""
        walks = [self._walk(prefix) for prefix in self.exact]
        seen: list[set[bytes]] = [set() for _ in walks]
        for _ in range(_RACE_LIMIT + 1):
            for i, (walk, ids) in enumerate(zip(walks, seen)):
                key = next(walk, None)
                if key is None:
                    del self.exact[i]  # the set stands for this filter now
                    return [ids]
                ids.add(key[-ID_LEN:])
        return []

    # -- ordering ------------------------------------------------------------------------

    def _sorted(self, candidates: Iterable[bytes]) -> Iterator[bytes]:
        """A small candidate set: decode, check every filter on the record, sort by index key."""
        runs = [r for r in (self.t.run(rid.decode()) for rid in candidates) if r is not None and self._fits(r)]
        field = self.q.sort
        runs.sort(key=lambda r: _sort_key(r, field), reverse=self.desc)
        if field == "ended":  # runs that have not ended come last, either way
            runs = [r for r in runs if r["ended"] is not None] + [r for r in runs if r["ended"] is None]
        return (r["id"].encode() for r in runs)

    def _fits(self, run: dict) -> bool:
        q = self.q
        return (
            (not self.top_only or not run.get("parent"))
            and (q.state is None or run["state"] == q.state)
            and (q.result is None or outcome(run) == q.result)
            and (q.flow is None or run["flow"] == q.flow)
            and (q.tag is None or q.tag in run["tags"])
            and (q.user is None or run["user"] == q.user)
            and (self.needle is None or self.needle in (run["label"] or "").casefold())
            and (q.since is None or run["created"] >= q.since)
            and (q.before is None or run["created"] < q.before)
        )

    def _walk_sorted(self, candidates: set[bytes] | None) -> Iterator[bytes]:
        """Walk the sort field's index in order, keeping the runs that pass every check."""
        field, desc = self.q.sort, self.desc
        checks: list[Callable[[bytes], bool]] = []
        if candidates is not None:
            checks.append(candidates.__contains__)
        checks += [lambda rid, p=prefix: self._has(p + rid) for prefix in self.exact]
        if self.top_only:
            checks.append(lambda rid: self._has(b"top\0\0" + rid))
        if field == "started":
            keys: Iterable[bytes] = self._started_range(desc)
        elif field == "ended":
            unended = [b"state\0" + s.encode() + b"\0" for s in RUN_STATES if s not in RUN_ENDED]
            later = (
                k for k in self._walk(b"started\0", reverse=desc) if any(self._has(p + k[-ID_LEN:]) for p in unended)
            )
            keys = _chain(self._walk(b"ended\0", reverse=desc), later)
        else:
            keys = self._walk(field.encode() + b"\0", reverse=desc)
            if field == "label" and self.needle is not None:
                keys = filter(self._label_hit, keys)
        for key in keys:
            rid = key[-ID_LEN:]
            if all(check(rid) for check in checks):
                yield rid


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part


def _sort_key(run: dict, field: str) -> bytes:
    """The run's key in the sort field's index (its start key while it has no end)."""
    if field == "ended" and run["ended"] is None:
        field = "started"
    prefix = field.encode() + b"\0"
    return next(k for k in index_keys(run) if k.startswith(prefix))


def _micros(t: float) -> bytes:
    return max(0, int(t * 1_000_000)).to_bytes(8, "big")


def _after(prefix: bytes) -> bytes:
    """The first key greater than every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


# -- index upgrade ---------------------------------------------------------------------------


def ensure_indexes(store: Store, batch: int = 5_000) -> None:
    """Give the runs of a store made before INDEX_VERSION the index keys they lack (once per store)."""
    with store.read() as t:
        mark = t.get("meta", b"indexes")
    if isinstance(mark, dict) and mark.get("version", 0) >= INDEX_VERSION:
        return
    start = b""
    while start is not None:
        start = store.write(lambda t, s=start: _reindex(t, s, batch))
    store.write(lambda t: t.put("meta", b"indexes", {"version": INDEX_VERSION}))


def _reindex(t: Txn, start: bytes, batch: int) -> bytes | None:
    """Write every index key of up to `batch` runs from `start`; where to go on, or None at the end."""
    cur = t.raw.cursor(db=t.store.dbs["runs"])
    keys = list(islice(cur.iternext(keys=True, values=False), batch + 1)) if cur.set_range(start) else []
    for key in keys[:batch]:
        for k in index_keys(t.run(key.decode())):
            t.put("indexes", k, None)
    return keys[batch] if len(keys) > batch else None
