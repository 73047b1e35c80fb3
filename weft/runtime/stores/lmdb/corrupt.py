"""Damaged entries met on read: each reported once per store and process (a one-line warning on stderr), then skipped."""

from __future__ import annotations

import sys
import threading

from weft.runtime.stores.lmdb.keys import shown

_seen: set[str] = set()
_guard = threading.Lock()


def entry(path: str, db: str, key: bytes, why: str) -> str:
    """The one-line description of a damaged entry of the store at `path`."""
    return f"corrupt index entry {shown(db, key)} in {path}: {why} (run `weft doctor --repair`)"


def skipped(path: str, db: str, key: bytes, why: str) -> None:
    """Report a damaged entry a read leaves out, the first time this process meets it."""
    text = entry(path, db, key, why)
    with _guard:
        if text in _seen:
            return
        _seen.add(text)
    print(f"weft: warning: {text}; skipped", file=sys.stderr, flush=True)
