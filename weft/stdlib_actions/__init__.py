"""Weft's standard actions, bound in every flow as `std`.

`std.log`, `std.echo`, `std.sleep`, `std.fail` and `std.exec` live here;
`std.file.append`, `std.file.write` and `std.http.request` in submodules.
"""

from __future__ import annotations

from typing import Any, TypedDict

from weft.sdk.actions import ActionFailed, Context, action
from weft.stdlib_actions.process import run_argv

__all__ = ["echo", "fail", "log", "run_argv", "sleep"]


class Echoed(TypedDict):
    value: Any


@action(idempotent=True, pure=True)
def log(message: str, *, ctx: Context) -> None:
    """Write `message` to the run's log."""
    ctx.log(message)


@action(idempotent=True, pure=True)
def echo(value: Any) -> Echoed:
    """Return `value` unchanged, as the output `value`."""
    return {"value": value}


@action(idempotent=True, pure=True)
async def sleep(seconds: float, *, ctx: Context) -> None:
    """Wait `seconds`, holding no thread; cancelling the run ends the wait at once (and fails the step)."""
    if await ctx.sleep(seconds):
        raise ActionFailed(f"cancelled while sleeping {seconds:g}s")


@action(idempotent=True, pure=True)
def fail(message: str) -> None:
    """Fail the step with `message`: to stop a flow on purpose or try error handling."""
    raise ActionFailed(message)
