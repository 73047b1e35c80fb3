"""A polling action whose polls raise when told to, for test_polling_retry.py.

Every `start` appends `start` to `path` and every poll `poll N`, so a test
counts how many external tasks were begun and how often they were polled.
"""

from __future__ import annotations

from typing import Any, TypedDict

from rt_actions import append_line

from weft import ActionFailed, Context, Pending, action


class Synced(TypedDict):
    polls: int


@action(poll_every=0.01, poll_max=0.02, poll_factor=2.0)
class sync:
    """Done at poll `done` of its task; polls `fail_from` to `fail_until` (counted over all tasks) raise."""

    def start(self, path: str, done: int, ctx: Context, fail_from: int = 0, fail_until: int = 0) -> Any:
        append_line(path, "start")
        return {"path": path, "done": done, "fail_from": fail_from, "fail_until": fail_until}

    def poll(self, handle: Any) -> Synced | Pending:
        with open(handle["path"]) as f:
            n = sum(line.startswith("poll") for line in f) + 1
        append_line(handle["path"], f"poll {n}")
        if handle["fail_from"] <= n <= handle["fail_until"]:
            raise ActionFailed(f"poll {n}: the service answered 503")
        return {"polls": n} if n >= handle["done"] else Pending(progress=n / handle["done"])
