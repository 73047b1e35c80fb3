"""Actions used by the runtime tests: side effects go to files so separate processes can be checked."""

from __future__ import annotations

import os
import time
from typing import Any, TypedDict

from weft.sdk.actions import ActionFailed, Context, action


class Value(TypedDict):
    value: Any


class Sum(TypedDict):
    total: int


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@action(idempotent=True)
def noop() -> None:
    """Do nothing."""


@action(idempotent=True)
def echo(value: Any) -> Value:
    return {"value": value}


@action(idempotent=True)
def add(a: int, b: int) -> Sum:
    return {"total": a + b}


@action
def effect(path: str, tag: str, ctx: Context, seconds: float = 0.0) -> Value:
    """A non-idempotent side effect: one line `<run> <tag> <attempt>` per call."""
    if seconds:
        time.sleep(seconds)
    append_line(path, f"{ctx.run_id} {tag} {ctx.attempt}")
    return {"value": tag}


@action
def effect_then_wait(path: str, tag: str, ctx: Context, seconds: float) -> Value:
    """`effect`, its line written first and then a wait: killed while it waits, its work is done."""
    append_line(path, f"{ctx.run_id} {tag} {ctx.attempt}")
    time.sleep(seconds)
    return {"value": tag}


@action(idempotent=True)
def effect_again(path: str, tag: str, ctx: Context, seconds: float = 0.0) -> Value:
    """The idempotent twin of `effect`."""
    if seconds:
        time.sleep(seconds)
    append_line(path, f"{ctx.run_id} {tag} {ctx.attempt}")
    return {"value": tag}


@action
def release(path: str, tag: str) -> None:
    """Undo of `effect`."""
    append_line(path, f"undo {tag}")


@action
def fail(message: str) -> None:
    raise ActionFailed(message)


@action
def flaky(times: int, ctx: Context) -> Value:
    """Fail the first `times` attempts."""
    if ctx.attempt <= times:
        raise ActionFailed(f"attempt {ctx.attempt} failed")
    return {"value": ctx.attempt}


@action
def fail_when_file(path: str) -> Value:
    """Fail while `path` exists (tests remove it, then resume)."""
    if os.path.exists(path):
        raise ActionFailed(f"{os.path.basename(path)} is present")
    return {"value": "ok"}


@action(idempotent=True)
def refuse_when_file(path: str) -> Value:
    """The idempotent twin of `fail_when_file`."""
    if os.path.exists(path):
        raise ActionFailed(f"{path} exists")
    return {"value": path}


@action(idempotent=True)
def sleep(seconds: float, ctx: Context) -> None:
    steps = 10
    for i in range(steps):
        if ctx.wait(seconds / steps):
            return
        ctx.progress((i + 1) / steps)


@action(idempotent=True)
def hang(seconds: float) -> None:
    """Sleep without looking at cancellation (a step that must be abandoned on timeout)."""
    time.sleep(seconds)


@action(idempotent=True)
def say(message: str, ctx: Context) -> None:
    ctx.log(message)
