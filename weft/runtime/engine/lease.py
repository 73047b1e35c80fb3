"""Run ownership: one process drives a run at a time.

A lease is (pid, host, process start time, heartbeat, token) in the `leases`
database. Another process may take it over only when the holder is gone: its
pid is not alive on this host (or is a different process reusing the pid), or
its heartbeat is older than TTL. The owner refreshes the heartbeat from a
thread and checks its token in every transaction it commits (fencing), so a
process whose lease was taken over stops instead of writing over the new owner.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time

from weft.errors import WeftError
from weft.runtime.stores.port import Store, Txn

HEARTBEAT = 1.0
TTL = 15.0
HOST = socket.gethostname()


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
        self.token = secrets.token_hex(8)
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, now: float) -> dict:
        return {
            "pid": self.pid,
            "host": HOST,
            "pid_start": _start_time(self.pid),
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
        """Refresh the heartbeat from a daemon thread until `stop()`."""

        def beat(txn: Txn) -> None:
            self.check(txn)
            txn.put_lease(self.run_id, self.record(time.time()))

        def loop() -> None:
            while not self._stop.wait(HEARTBEAT):
                try:
                    store.write(beat)
                except WeftError:
                    return  # lost, or the store failed: the driver's own commit reports it

        self._thread = threading.Thread(target=loop, name=f"weft-lease-{self.run_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
