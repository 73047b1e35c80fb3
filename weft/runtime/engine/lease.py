"""Run ownership: one process drives a run at a time.

A lease is (pid, host, process start time, heartbeat, token) in the `leases`
database. Another process may take it over only when the holder is gone: its
pid is not alive on this host (or is a different process reusing the pid), or
its heartbeat is older than TTL. The owner refreshes the heartbeat from a
thread (one per store and process, for every lease it holds there) and
checks its token in every transaction it commits (fencing), so a process
whose lease was taken over stops instead of writing over the new owner.
"""

from __future__ import annotations

import os
import threading
import time

from weft.errors import WeftError
from weft.runtime.stores.port import Store, Txn

HEARTBEAT = 1.0
TTL = 15.0
HOST = os.uname().nodename  # socket.gethostname(), without importing socket at start-up


class LeaseHeld(WeftError):
    """Another live process drives the run."""


class LeaseLost(WeftError):
    """This process's lease was taken over; it must stop driving the run."""


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (to tell a reused pid apart), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _own_start(pid: int) -> str | None:
    """This process's start time, read once per pid (a forked child reads its own)."""
    if _OWN.get("pid") != pid:
        _OWN.update(pid=pid, start=_start_time(pid))
    return _OWN["start"]


_OWN: dict = {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def holder_alive(lease: dict, now: float) -> bool:
    """Whether the process holding `lease` may still be driving its run."""
    if now - lease["heartbeat"] > TTL:
        return False
    if lease["host"] != HOST:
        return True
    if not _pid_alive(lease["pid"]):
        return False
    started = _start_time(lease["pid"])
    return started is None or lease.get("pid_start") in (None, started)


def describe(lease: dict, now: float) -> str:
    return f"pid {lease['pid']} on {lease['host']} (heartbeat {max(0.0, now - lease['heartbeat']):.0f}s ago)"


class Lease:
    """This process's claim on one run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.token = os.urandom(8).hex()  # secrets.token_hex(8), without importing secrets (random, hmac...)
        self.pid = os.getpid()
        self.pid_start = _own_start(self.pid)
        self._beat: _Heartbeat | None = None

    def record(self, now: float) -> dict:
        return {
            "pid": self.pid,
            "host": HOST,
            "pid_start": self.pid_start,
            "heartbeat": now,
            "token": self.token,
        }

    def acquire(self, txn: Txn, now: float) -> dict | None:
        """Take the lease inside `txn`; LeaseHeld if a live process has it. Returns the dead holder's lease."""
        current = txn.lease(self.run_id)
        if current is not None and current["token"] != self.token and holder_alive(current, now):
            raise LeaseHeld(f"run {self.run_id} is being driven by {describe(current, now)}")
        txn.put_lease(self.run_id, self.record(now))
        return current if current is not None and current["token"] != self.token else None

    def check(self, txn: Txn) -> None:
        """Fencing: raise LeaseLost unless this process still holds the lease."""
        current = txn.lease(self.run_id)
        if current is None or current["token"] != self.token:
            who = describe(current, time.time()) if current else "nobody"
            raise LeaseLost(f"run {self.run_id} was taken over by {who}; this process stopped driving it")

    def release(self, txn: Txn) -> None:
        current = txn.lease(self.run_id)
        if current is not None and current["token"] == self.token:
            txn.drop_lease(self.run_id)

    def keep_alive(self, store: Store) -> None:
        """Have the heartbeat of `store` in this process refresh this lease until `stop()`."""
        with _BEATING:
            beat = _BEATS.get(id(store))
            if beat is None:
                beat = _BEATS[id(store)] = _Heartbeat(store)
            beat.leases[self.token] = self
        self._beat = beat

    def stop(self) -> None:
        """No more heartbeats for this lease; the last lease of a store stops its heartbeat's thread."""
        beat, self._beat = self._beat, None
        if beat is None:
            return
        with _BEATING:
            beat.leases.pop(self.token, None)  # (gone already if the heartbeat found it taken over)
            last = not beat.leases and _BEATS.get(id(beat.store)) is beat
            if last:
                del _BEATS[id(beat.store)]
                beat.stopping.set()
        if last:
            beat.thread.join()


class _Heartbeat:
    """One thread per store and process that refreshes every lease the process holds on it, in one transaction
    each HEARTBEAT seconds: a thousand sub-runs driven here cost one thread and one commit a second, not a
    thousand. A lease found taken over is dropped from it (its driver's next commit stops with LeaseLost)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.leases: dict[str, Lease] = {}  # token -> lease (guarded by _BEATING)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="weft-heartbeat", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.wait(HEARTBEAT):
            with _BEATING:
                leases = list(self.leases.values())
            try:
                lost = self.store.write(lambda t: _beat(t, leases, time.time()))
            except WeftError:
                continue  # the store failed: each driver's own commit reports it
            with _BEATING:
                for lease in lost:
                    self.leases.pop(lease.token, None)


def _beat(txn: Txn, leases: list[Lease], now: float) -> list[Lease]:
    """Refresh `leases` inside `txn`; returns those another process took over."""
    lost = []
    for lease in leases:
        current = txn.lease(lease.run_id)
        if current is None or current["token"] != lease.token:
            lost.append(lease)
        else:
            txn.put_lease(lease.run_id, lease.record(now))
    return lost


_BEATS: dict[int, _Heartbeat] = {}  # id(store) -> its heartbeat in this process
_BEATING = threading.Lock()
