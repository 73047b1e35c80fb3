"""Which worker processes serve a store: each announces itself in `<store>/workers/`, refreshed every second.

A file per process (`<host>-<pid>.json`, owner-only, replaced atomically)
says when it started, how many runs it drives at once and which it drives
now. A clean stop removes it; after a crash it stays until it is seen to be
stale (a dead pid on this host, or no refresh for lease.TTL seconds), when
the next look removes it. A store in memory keeps the same records in this
process. Nothing here is a record of a run: losing a file loses no work.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass

from weft.runtime.engine.lease import HOST, TTL, holder_alive
from weft.runtime.stores import in_memory

FOLDER = "workers"
_memory: dict[str, dict[str, dict]] = {}  # store path -> name -> record, for stores in memory
_memory_guard = threading.Lock()


@dataclass(frozen=True)
class Announcement:
    pid: int
    host: str
    started: float
    heartbeat: float
    limit: int  # runs it drives at once
    runs: tuple[str, ...]  # those it drives now
    kind: str  # "worker" (weft worker) or "server" (weft serve's embedded worker)


class Registry:
    """One store's worker announcements."""

    def __init__(self, store_path: str) -> None:
        self.path = store_path
        self.folder = None if in_memory(store_path) else os.path.join(store_path, FOLDER)

    def _name(self, pid: int, host: str) -> str:
        return f"{host}-{pid}.json"

    def announce(self, a: Announcement) -> None:
        name = self._name(a.pid, a.host)
        record = asdict(a)
        if self.folder is None:
            with _memory_guard:
                _memory.setdefault(self.path, {})[name] = record
            return
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        tmp = os.path.join(self.folder, f".{name}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.folder, name))

    def leave(self, pid: int, host: str = HOST) -> None:
        name = self._name(pid, host)
        if self.folder is None:
            with _memory_guard:
                _memory.get(self.path, {}).pop(name, None)
            return
        try:
            os.unlink(os.path.join(self.folder, name))
        except FileNotFoundError:
            pass

    def live(self, now: float | None = None) -> list[Announcement]:
        """The workers that may still be serving, oldest first; stale announcements are removed."""
        now = time.time() if now is None else now
        found = []
        for record in self._records():
            try:
                a = Announcement(**{**record, "runs": tuple(record["runs"])})
            except (TypeError, KeyError):
                continue  # not one of ours
            if holder_alive({"pid": a.pid, "host": a.host, "heartbeat": a.heartbeat}, now):
                found.append(a)
            elif now - a.heartbeat > TTL or a.host == HOST:
                self.leave(a.pid, a.host)
        return sorted(found, key=lambda a: (a.started, a.pid))

    def _records(self) -> list[dict]:
        if self.folder is None:
            with _memory_guard:
                return list(_memory.get(self.path, {}).values())
        out = []
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        for n in names:
            try:
                with open(os.path.join(self.folder, n), encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                out.append(record)
        return out
