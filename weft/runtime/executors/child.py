"""A process that runs tasks for a ProcessExecutor: `python -m weft.runtime.executors.child`.

It reads frames from stdin: {"task": Task data} runs that task (one at a time)
in a thread; {"cancel": true} cancels the task running. It writes frames to
its stdout: {"progress": f}, {"log": line}, then {"outcome": Outcome data}.
Whatever an action prints goes to stderr, so it cannot garble the frames.
The process ends when stdin closes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import BinaryIO

from weft.runtime.executors import frames
from weft.runtime.executors.perform import perform
from weft.runtime.executors.port import Outcome, Task


class ChildChannel:
    """The Channel of the task running in this process: reports become frames on the executor's pipe."""

    def __init__(self, out: BinaryIO, lock: threading.Lock) -> None:
        self._out = out
        self._lock = lock
        self.cancel_event = threading.Event()

    def _send(self, message: dict) -> None:
        with self._lock:
            frames.write(self._out, message)

    def progress(self, fraction: float) -> None:
        self._send({"progress": fraction})

    def log(self, line: str) -> None:
        self._send({"log": line})

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.cancel_event.wait(max(0.0, seconds))

    def finish(self, outcome: Outcome) -> None:
        self._send({"outcome": outcome.to_data()})


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the driving process; it cancels tasks
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    lock = threading.Lock()
    reader = frames.Reader(sys.stdin.fileno())
    channel: ChildChannel | None = None
    while not reader.closed:
        for message in reader.read():
            if "task" in message:
                channel = ChildChannel(out, lock)
                task = Task.from_data(message["task"])
                threading.Thread(target=_run, args=(task, channel), daemon=True).start()
            elif "cancel" in message and channel is not None:
                channel.cancel_event.set()


def _run(task: Task, channel: ChildChannel) -> None:
    channel.finish(perform(task, channel))


if __name__ == "__main__":
    main()
