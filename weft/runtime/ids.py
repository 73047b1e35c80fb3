"""Run ids: 26 characters of Crockford base32, sortable by creation time (ULID layout).

48 bits of milliseconds since the epoch, then 80 bits that are random for the
first id of a millisecond and incremented after it, so ids made by one process
sort in creation order even within a millisecond.
"""

from __future__ import annotations

import os
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 26
_lock = threading.Lock()
_last = [0, 0]  # millisecond, random part of the previous id


def new_run_id(now: float | None = None) -> str:
    """A fresh run id, greater than every id this process made before."""
    ms = int((time.time() if now is None else now) * 1000)
    with _lock:
        if ms <= _last[0]:
            ms, rand = _last[0], _last[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(LENGTH)))


def normalize(text: str) -> str:
    """A user-typed id or id prefix in canonical form (upper case, I/L read as 1, O as 0)."""
    return text.strip().upper().translate(str.maketrans("ILO", "110"))


def is_id_text(text: str) -> bool:
    """Whether `text` could be (a prefix of) a run id."""
    return 0 < len(text) <= LENGTH and all(c in ALPHABET for c in text)
