"""Run and step states, and the records that hold them.

Step states: pending, running, suspended (a signal wait, or a polling action
between polls), succeeded, failed, skipped, cancelled, undone (rolled back).
A step's `due` is when it may start again (a retry) or be polled next; its
`deadline` is when its `timeout` runs out; `poll` holds a polling step's handle
(see waiting.py).

A run record carries, besides its state, where the orchestrator is:
`stage` is "run", "finalize", "hooks" (on success / on failure steps, after
`ending` was decided) or "rollback"; `halt` is why no new step may start
("pause", "fail", "rollback", "cancel") while running steps finish.
"""

from __future__ import annotations

from typing import Any

RUN_STATES = ("pending", "running", "paused", "succeeded", "failed", "cancelled")

RUN_ENDED = frozenset({"succeeded", "failed", "cancelled"})
RUN_STOPPED = RUN_ENDED | {"paused"}
DONE = frozenset({"succeeded", "skipped"})  # dependents may go on
UNFINISHED = frozenset({"pending", "running", "suspended"})


def new_step() -> dict[str, Any]:
    """A step record before its first attempt."""
    return {
        "state": "pending",
        "attempts": 0,
        "retries_used": 0,
        "started": None,
        "ended": None,
        "inputs": None,
        "outputs": None,
        "error": None,
        "due": None,
        "deadline": None,
        "poll": None,
        "undo": None,
    }


def new_run(
    run_id: str,
    plan: dict,
    inputs: dict,
    *,
    label: str | None,
    locks: list[str],
    user: str,
    now: float,
    parent: dict | None = None,
) -> dict[str, Any]:
    """A run record in state `pending`; `parent` ({"run", "step", "index"}) links a sub-run to its `each` step."""
    return {
        "id": run_id,
        "flow": plan["flow"],
        "file": plan.get("file"),
        "label": label,
        "tags": list(plan.get("tags") or ()),
        "locks": locks,
        "user": user,
        "state": "pending",
        "created": now,
        "started": None,
        "ended": None,
        "inputs": inputs,
        "result": None,
        "error": None,
        "progress": 0.0,
        "stage": "run",
        "halt": None,
        "ending": None,
        "rolled_back": False,
        "parent": parent,
    }


def outcome(run: dict) -> str | None:
    """How an ended run came out: succeeded, failed, cancelled or rolled back; None before it ends."""
    if run["state"] not in RUN_ENDED:
        return None
    return "rolled back" if run.get("rolled_back") else run["state"]


def error_record(kind: str, message: str, traceback: str | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": traceback}


def describe_error(error: dict | None) -> str:
    if not error:
        return ""
    return f"{error['type']}: {error['message']}" if error.get("type") else error["message"]
