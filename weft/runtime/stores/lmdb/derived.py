"""The index or timer entries (and states) of the records this process wrote last, remembered by their stored bytes.

Writing a run (step) record replaces the index (timer) entries of the version
stored before with those of the new one, so the stored version must be known;
decoding it costs more than the rest of the write. A `Derived` remembers, for
the last records written, the exact bytes stored and the entries derived from
them. It answers only when the bytes stored now are those very bytes, so it is
never stale: after an aborted transaction, another process's write or a repair,
the bytes differ and the record is decoded as before.

Used by one writer at a time (the environment's write lock).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Set as AbstractSet

KEPT = 1024  # records remembered per database: more than a driver has running at once
_NONE: frozenset[bytes] = frozenset()


class Derived:
    def __init__(self, size: int = KEPT) -> None:
        self._size = size
        # (not a dict: a dict finds its first key by skipping the slots of every key deleted before it)
        self._known: OrderedDict[bytes, tuple[bytes, frozenset[bytes], str | None]] = OrderedDict()
        # the stored bytes of a record that derives no entries at any key (a new step's), and its state
        self.blank: tuple[bytes, str | None] | None = None

    def get(self, key: bytes, raw: bytes) -> tuple[frozenset[bytes], str | None] | None:
        """(entries, state) of the record stored at `key` as `raw`, if these are the bytes written last (or the
        blank record's); else None."""
        known = self._known.get(key)
        if known is not None and known[0] == raw:
            return known[1], known[2]
        blank = self.blank
        return (_NONE, blank[1]) if blank is not None and blank[0] == raw else None

    def put(self, key: bytes, raw: bytes, entries: AbstractSet[bytes], state: str | None = None) -> None:
        """Record `raw` (in `state`) was written at `key`, with `entries`; beyond the size, the first record
        remembered goes."""
        known = self._known
        known[key] = (raw, frozenset(entries), state)  # (no entries: the one empty frozenset)
        if len(known) > self._size:
            known.popitem(last=False)
