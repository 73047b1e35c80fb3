"""Answering a Query (query.py) from the index keys (keys.py), without decoding every run.

- an exact-value filter (state, result, flow, tag, user, schedule) is checked for one
  run with one key lookup, `<field>\\0<value>\\0<run>`;
- `parent`, `lock`, a start-time range and a `label` substring each name a set
  read from its own index (child keys, the lock entry, a range of start keys,
  the label keys matched without decoding a run);
- when no such set is given, the exact-value indexes race: they are read side
  by side until the smallest runs out, and that one becomes the set;
- a small candidate set is decoded and sorted in memory; otherwise the sort
  field's index is walked in order, each run checked against the set and the
  lookups. Only the runs on the page are decoded; the total is counted on the
  narrowest index (the exact-value one, or the keys of top-level runs).
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator

from weft.runtime.core.states import RUN_ENDED, RUN_STATES
from weft.runtime.stores import query
from weft.runtime.stores.lmdb import keys as K
from weft.runtime.stores.query import Page, Query

if TYPE_CHECKING:
    from weft.runtime.stores.lmdb.store import Store
    from weft.runtime.stores.lmdb.txn import Txn

_EXACT = ("state", "result", "flow", "tag", "user", "schedule")
_RACE_LIMIT = 20_000  # an exact-value index bigger than this is checked per run, never read whole
_RACE_BATCH = 1_000  # keys read from each racing index in turn
_IN_MEMORY = 2_000  # candidate sets up to this size are decoded and sorted rather than walking an index
_KEYS_PER_DECODE = 20  # index keys read for the time it takes to decode one run, and more


def search(t: Txn, q: Query) -> Page:
    """One page of the runs matching every filter of `q`, in its sort order."""
    query.check(q)
    search = _Search(t, q)
    found = (rid for rid in search.ids() if t.names_run("indexes", b"...\0" + rid, K.run_id_of(rid)))
    page = list(islice(found, q.offset, q.offset + q.limit))
    return Page([t.run(rid.decode()) for rid in page], search.total(), q.offset)


class _Search:
    """One query inside one read transaction; run ids are handled as bytes."""

    def __init__(self, t: Txn, q: Query) -> None:
        self.t, self.q = t, q
        self.desc = (q.sort in query.NEWEST_FIRST) != q.reverse
        self.exact = [K.index_prefix(f, v) for f in _EXACT if (v := getattr(q, f)) is not None]
        # Sub-runs are left out unless asked for: a cheap key check per run, never a race entry.
        self.top_only = not q.sub_runs and q.parent is None
        self.needle = q.label.casefold() if q.label is not None else None
        self.candidates: set[bytes] | None = None  # the run ids the set-like filters allow, if any
        self.ordered: list[bytes] | None = None  # every match in order, when sorted in memory

    def ids(self) -> Iterator[bytes]:
        q = self.q
        sets = []
        if q.lock is not None:
            sets.append(self._lock_holder())
        if q.parent is not None:
            parent = self.t.find_run(q.parent).encode()
            sets.append({k[-K.ID_LEN :] for k in self._walk(b"child\0" + parent)})
        if (q.since is not None or q.before is not None) and q.sort != "started":
            sets.append({k[-K.ID_LEN :] for k in self._started_range(False)})
        if self.needle is not None and q.sort != "label":
            sets.append({k[-K.ID_LEN :] for k in self._walk(b"label\0") if self._label_hit(k)})
        if not sets and self.exact:
            sets += self._race()
        self.candidates = candidates = set.intersection(*sorted(sets, key=len)) if sets else None
        if candidates is not None and len(candidates) <= _IN_MEMORY:
            if q.sort == "started" and (q.since is not None or q.before is not None):
                candidates = self._started_within(candidates)
            self.ordered = list(self._sorted(candidates))
            return iter(self.ordered)
        return self._walk_sorted(candidates)

    def total(self) -> int:
        """How many runs match (after `ids`): the narrowest set of ids, then one sorted batch of lookups per
        index the runs must also be in; the keys are read and looked up by LMDB's cursor, no Python per key."""
        if self.ordered is not None:
            return len(self.ordered)
        q, exact, candidates = self.q, self.exact, self.candidates
        ids: Collection[bytes]
        if q.sort == "started" and (q.since is not None or q.before is not None):
            ids = self._ids(*self._started_bounds())
        elif q.sort == "label" and self.needle is not None:
            ids = [k[-K.ID_LEN :] for k in self._walk(b"label\0") if self._label_hit(k)]
        elif candidates is not None:
            ids, candidates = candidates, None
        elif exact:
            ids, exact = self._ids(exact[0], K.after(exact[0])), exact[1:]
        else:
            whole = K.TOP if self.top_only else b"started\0"
            return self.t.key_count("indexes", whole, K.after(whole))
        if candidates is not None:
            ids = [rid for rid in ids if rid in candidates]
        for prefix in [*exact, *([K.TOP] if self.top_only else [])]:
            ids = [k[len(prefix) :] for k in self.t.present("indexes", [prefix + rid for rid in ids])]
        return len(ids)

    def _ids(self, low: bytes, high: bytes) -> list[bytes]:
        """The run ids at the end of the index keys from `low` to `high` (excluded)."""
        return [k[-K.ID_LEN :] for k in self.t.key_list("indexes", low, high)]

    def _checks(self, candidates: set[bytes] | None, exact: list[bytes]) -> list[Callable[[bytes], bool]]:
        """Checks of one run id: in `candidates`, in every `exact` index, not a sub-run unless asked for."""
        checks: list[Callable[[bytes], bool]] = []
        if candidates is not None:
            checks.append(candidates.__contains__)
        checks += [lambda rid, p=prefix: self._has(p + rid) for prefix in exact]
        if self.top_only:
            checks.append(lambda rid: self._has(K.TOP + rid))
        return checks

    # -- index keys ----------------------------------------------------------------------

    def _has(self, key: bytes) -> bool:
        return self.t.has("indexes", key)

    def _walk(self, low: bytes, high: bytes | None = None, reverse: bool = False) -> Iterator[bytes]:
        """Index keys from `low` (included) to `high` (excluded; default: every key starting with `low`)."""
        return self.t.walk("indexes", low, K.after(low) if high is None else high, reverse)

    def _started_bounds(self) -> tuple[bytes, bytes]:
        q = self.q
        low = K.time_key("started", q.since) if q.since is not None else b"started\0"
        high = K.time_key("started", q.before) if q.before is not None else K.after(b"started\0")
        return low, high

    def _started_range(self, reverse: bool) -> Iterator[bytes]:
        return self._walk(*self._started_bounds(), reverse)

    def _started_within(self, candidates: set[bytes]) -> set[bytes]:
        """`candidates` less the runs started outside the time range, when the range's index keys are few enough
        to read (a key costs a fraction of decoding a run), else `candidates` as they are."""
        most = _KEYS_PER_DECODE * len(candidates)
        keys = self.t.key_list("indexes", *self._started_bounds(), limit=most + 1)
        return candidates if len(keys) > most else candidates.intersection(k[-K.ID_LEN :] for k in keys)

    def _lock_holder(self) -> set[bytes]:
        holder = self.t.lock_holder(self.q.lock)
        run = self.t.run(holder) if holder else None
        return {holder.encode()} if run is not None and run["state"] not in RUN_ENDED else set()

    def _label_hit(self, key: bytes) -> bool:
        text = key[len(b"label\0") : -K.ID_LEN - 1]
        if self.needle in text.decode("utf-8", "ignore").casefold():
            return True
        if len(text) < query.LABEL_KEY_MAX:
            return False
        run = self.t.run(key[-K.ID_LEN :].decode())  # the key holds only the label's first bytes
        return run is not None and self.needle in (run["label"] or "").casefold()

    def _race(self) -> list[set[bytes]]:
        """[the run ids of the smallest exact-value index] if it has at most _RACE_LIMIT entries, else []:
        the indexes are read side by side, a batch of keys of each in turn."""
        lows = list(self.exact)
        seen: list[set[bytes]] = [set() for _ in lows]
        for _ in range(0, _RACE_LIMIT + 1, _RACE_BATCH):
            for i, (prefix, ids) in enumerate(zip(self.exact, seen)):
                keys = self.t.key_list("indexes", lows[i], K.after(prefix), _RACE_BATCH)
                ids.update(k[-K.ID_LEN :] for k in keys)
                if len(keys) < _RACE_BATCH:
                    del self.exact[i]  # the set stands for this filter now
                    return [ids]
                lows[i] = keys[-1] + b"\0"
        return []

    # -- ordering ------------------------------------------------------------------------

    def _sorted(self, candidates: Iterable[bytes]) -> Iterator[bytes]:
        """A small candidate set: decode, check every filter on the record, sort."""
        found = (
            self.t.run(rid.decode()) for rid in candidates if self.t.names_run("indexes", b"...\0" + rid, rid.decode())
        )
        runs = [r for r in found if query.fits(r, self.q)]
        return (r["id"].encode() for r in query.order(runs, self.q))

    def _walk_sorted(self, candidates: set[bytes] | None) -> Iterator[bytes]:
        """Walk the sort field's index in order, keeping the runs that pass every check."""
        field, desc = self.q.sort, self.desc
        checks = self._checks(candidates, self.exact)
        if field == "started":
            keys: Iterable[bytes] = self._started_range(desc)
        elif field == "ended":
            unended = [K.index_prefix("state", s) for s in RUN_STATES if s not in RUN_ENDED]
            later = (
                k for k in self._walk(b"started\0", reverse=desc) if any(self._has(p + k[-K.ID_LEN :]) for p in unended)
            )
            keys = _chain(self._walk(b"ended\0", reverse=desc), later)
        else:
            keys = self._walk(field.encode() + b"\0", reverse=desc)
            if field == "label" and self.needle is not None:
                keys = filter(self._label_hit, keys)
        for key in keys:
            rid = key[-K.ID_LEN :]
            if all(check(rid) for check in checks):
                yield rid


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part


# -- index upgrade ---------------------------------------------------------------------------


def ensure_indexes(store: Store, batch: int = 5_000) -> None:
    """Give the runs of a store made before INDEX_VERSION the index keys they lack (once per store)."""
    with store.read() as t:
        mark = t.meta("indexes")
    if isinstance(mark, dict) and mark.get("version", 0) >= K.INDEX_VERSION:
        return
    start: bytes | None = b""
    while start is not None:
        start = store.write(lambda t, s=start: _reindex(t, s, batch))
    store.write(lambda t: t.put_meta("indexes", {"version": K.INDEX_VERSION}))


def _reindex(t: Txn, start: bytes, batch: int) -> bytes | None:
    """Write every index key of up to `batch` runs from `start`; where to go on, or None at the end."""
    keys = list(islice(t.walk("runs", start), batch + 1))
    for key in keys[:batch]:
        for k in K.index_keys(t.run(key.decode())):
            t.put("indexes", k, None)
    return keys[batch] if len(keys) > batch else None
