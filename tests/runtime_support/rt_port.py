"""Actions for the executor port's tests: where they ran, what they report, how they fail."""

from __future__ import annotations

import os
import time
from typing import Any, TypedDict

from weft import Context, Pending, action


class Where(TypedDict):
    pid: int
    step: str


class Waited(TypedDict):
    cancelled: bool


class Counted(TypedDict):
    started_in: int
    polled_in: int


@action(idempotent=True)
def where(ctx: Context) -> Where:
    """Say half way, then which process ran it."""
    ctx.progress(0.5)
    ctx.log("half way")
    return {"pid": os.getpid(), "step": ctx.step_id}


class Seen(TypedDict):
    run: str
    step: str
    attempt: int
    deadline: float | None


@action(idempotent=True)
def context(ctx: Context) -> Seen:
    """What the action's Context says about its task."""
    return {"run": ctx.run_id, "step": ctx.step_id, "attempt": ctx.attempt, "deadline": ctx.deadline}


@action(idempotent=True)
def chatty(lines: int) -> Where:
    """Print to stdout (which a process executor must keep apart from its own messages)."""
    for i in range(lines):
        print(f"line {i}" + "x" * 1000, flush=True)
    return {"pid": os.getpid(), "step": "chatty"}


@action
def broken(key: str) -> None:
    """Fail with a KeyError from inside the action (not a missing action)."""
    {}[key]


@action(idempotent=True)
def patient(seconds: float, ctx: Context) -> Waited:
    """Say it waits, then wait up to `seconds`, stopping early when cancelled."""
    ctx.log("waiting")
    return {"cancelled": ctx.wait(seconds)}


@action(idempotent=True)
def stubborn(seconds: float) -> None:
    """Sleep without looking at cancellation."""
    time.sleep(seconds)


@action
def dies(code: int) -> None:
    """End the process running it."""
    os._exit(code)


@action(idempotent=True, poll_every=0.02, poll_max=0.02)
class countdown:
    """An external task done `seconds` after its start."""

    def start(self, seconds: float) -> Any:
        return {"until": time.time() + seconds, "seconds": seconds, "pid": os.getpid()}

    def poll(self, handle: Any) -> Counted | Pending:
        left = handle["until"] - time.time()
        if left > 0:
            return Pending(progress=round(1 - left / handle["seconds"], 2))
        return {"started_in": handle["pid"], "polled_in": os.getpid()}
