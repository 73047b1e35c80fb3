"""Polling actions for the runtime's tests: simulated external tasks.

`counted` tasks live in this process (a dict keyed by handle) and finish after
a given number of polls; `timed` tasks finish some seconds after they started
and leave `<run> <step> <attempt>` in a file for every start, so that tests
with several processes can count the starts.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any, TypedDict

from rt_actions import append_line
from weft import ActionFailed, Context, Pending, action

POLLS: dict[str, int] = {}  # handle id -> polls so far
STARTED: Counter = Counter()  # run id -> tasks started
THREADS: list[tuple[int, int]] = []  # (threading.active_count(), OS threads) inside every start and poll


class Done(TypedDict):
    name: str
    polls: int


class Value(TypedDict):
    value: str


def _count_threads() -> None:
    THREADS.append((threading.active_count(), len(os.listdir("/proc/self/task"))))


@action(poll_every=0.01, poll_max=0.04, poll_factor=2.0)
class counted:
    """A task done at its `polls`-th poll once `gate` tasks have started; the first `fail_polls` polls of attempt 1 fail."""

    def start(self, name: str, polls: int, ctx: Context, fail_polls: int = 0, gate: int = 0) -> Any:
        _count_threads()
        handle = {
            "id": f"{ctx.run_id}/{ctx.step_id}/{ctx.attempt}",
            "name": name,
            "polls": polls,
            "fail": fail_polls if ctx.attempt == 1 else 0,
            "gate": gate,
        }
        STARTED[ctx.run_id] += 1
        return handle

    def poll(self, handle: Any) -> Done | Pending:
        _count_threads()
        n = POLLS[handle["id"]] = POLLS.get(handle["id"], 0) + 1
        if n <= handle["fail"]:
            raise ActionFailed(f"poll {n} of {handle['name']} failed")
        if n < handle["polls"] or STARTED[handle["id"].split("/")[0]] < handle["gate"]:
            return Pending(progress=n / handle["polls"])
        return {"name": handle["name"], "polls": n}


@action(poll_every=0.2, poll_max=1.0, poll_factor=2.0)
class counted_slowly(counted):
    """`counted` with longer intervals, for big batches."""


@action(poll_every=0.05, poll_max=0.2, poll_factor=2.0)
class timed:
    """Not idempotent: each start appends `<run> <step> <attempt>` to `path`; done `seconds` later.

    While the file `hold` exists, `start` does not return (a start to kill a process in).
    """

    def start(self, path: str, seconds: float, ctx: Context, hold: str = "") -> Any:
        while hold and os.path.exists(hold):
            time.sleep(0.02)
        append_line(path, f"{ctx.run_id} {ctx.step_id} {ctx.attempt}")
        return {"step": ctx.step_id, "done_at": time.time() + seconds, "seconds": seconds}

    def poll(self, handle: Any) -> Value | Pending:
        left = handle["done_at"] - time.time()
        if left > 0:
            return Pending(progress=1.0 - left / max(handle["seconds"], 1e-9))
        return {"value": handle["step"]}
