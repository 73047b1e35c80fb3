"""The executor port over child processes: each task runs in a process of its own, sent as msgpack.

A `ProcessExecutor` keeps a pool of `python -m weft.runtime.executors.child`
processes, one task at a time each, and talks to them over their stdin and
stdout in length-prefixed msgpack frames (`frames.py`): the Task goes in as
`Task.to_data()`, and progress, log lines and the finished `Outcome` come back
and are relayed to the task's channel. A cancelled channel sends the child a
cancel frame (the action sees `ctx.cancelled()`); a child that has not
finished `grace` seconds later is killed, so an action abandoned after its
timeout cannot run on. A child that dies mid-task fails the task; the pool
starts another for the next one.

Only what the port carries reaches the action, so this executor proves that
Tasks and Outcomes are enough for a remote one, and it isolates actions that
leak memory, threads or file descriptors from the process driving the runs.
"""

from __future__ import annotations

import select
import subprocess
import sys
import threading
import time

from weft.runtime.core.states import error_record
from weft.runtime.executors import frames
from weft.runtime.executors.port import Channel, Outcome, Task

GRACE = 2.0  # seconds a cancelled task may take to stop before its process is killed, by default
_LOOK = 0.05  # seconds between looks at a task's channel for a cancel while it runs


class ProcessExecutor:
    """Runs tasks in child processes; starts one whenever none is idle (the driver bounds how many run)."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self._idle: list[subprocess.Popen] = []
        self._all: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, task: Task, channel: Channel) -> None:
        child = self._take()
        threading.Thread(
            target=self._serve, args=(child, task, channel), name=f"weft-task-{task.id}", daemon=True
        ).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._idle = list(self._all), []
        for child in children:
            _stop(child)

    def pids(self) -> list[int]:
        """The process ids of the children alive now."""
        with self._lock:
            return sorted(c.pid for c in self._all if c.poll() is None)

    def _take(self) -> subprocess.Popen:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.poll() is None:
                    return child
                self._all.discard(child)
            child = subprocess.Popen(
                [sys.executable, "-m", "weft.runtime.executors.child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
            )
            self._all.add(child)
            return child

    def _give_back(self, child: subprocess.Popen) -> None:
        with self._lock:
            if not self._closed and child.poll() is None:
                self._idle.append(child)
                return
            self._all.discard(child)
        _stop(child)

    def _serve(self, child: subprocess.Popen, task: Task, channel: Channel) -> None:
        """Send `task` to `child` and relay what it says until it finishes (or dies, or is killed)."""
        try:
            frames.write(child.stdin, {"task": task.to_data()})
            outcome, answered = self._relay(child, channel)
        except OSError as e:  # a broken pipe: the child is gone
            outcome, answered = Outcome(False, error=error_record("ProcessDied", f"the action's process: {e}")), False
        if answered:
            self._give_back(child)
        else:
            self._discard(child)
        channel.finish(outcome)

    def _relay(self, child: subprocess.Popen, channel: Channel) -> tuple[Outcome, bool]:
        """The task's Outcome, and whether the child gave it (so it may take the next task)."""
        reader = frames.Reader(child.stdout.fileno())
        cancel_sent: float | None = None
        while True:
            ready, _, _ = select.select([reader.fd], [], [], _LOOK)
            if ready:
                for message in reader.read():
                    if "progress" in message:
                        channel.progress(message["progress"])
                    elif "log" in message:
                        channel.log(message["log"])
                    elif "outcome" in message:
                        return Outcome.from_data(message["outcome"]), True
                if reader.closed:
                    code = child.wait()
                    return Outcome(
                        False, error=error_record("ProcessDied", f"the action's process exited ({code})")
                    ), False
            if cancel_sent is None and channel.cancelled():
                frames.write(child.stdin, {"cancel": True})
                cancel_sent = time.monotonic()
            elif cancel_sent is not None and time.monotonic() - cancel_sent > self.grace:
                child.kill()
                child.wait()
                why = f"the action did not stop within {self.grace:g}s"
                return Outcome(False, error=error_record("Cancelled", why)), False

    def _discard(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._all.discard(child)
        _stop(child)


def _stop(child: subprocess.Popen) -> None:
    """End a child: closing its stdin ends an idle one; one that does not go is killed."""
    try:
        child.stdin.close()
    except OSError:
        pass
    try:
        child.wait(0.5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()
