"""Run and step states, and the records that hold them (their keys: weft.plan.schema).

Step states: pending, running, suspended (a signal wait, or a polling action
between polls), succeeded, failed, skipped, cancelled, undone (rolled back).
A step's `due` is when it may start again (a retry) or be polled next; its
`deadline` is when its `timeout` runs out; `poll` holds a polling step's handle
(see waiting.py).

A run record carries, besides its state, where the orchestrator is:
`stage` is "run", "finalize", "hooks" (on success / on failure steps, after
`ending` was decided) or "rollback"; `halt` is why no new step may start
("pause", "fail", "rollback", "cancel") while running steps finish.

The states are `StrEnum`s: a stored record holds the plain string, which
compares equal to its member, so stores written before them read unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from weft.plan.schema import ErrorRecord, Plan, RunRecord, StepRecord
from weft.plan.secrets import secret_params


class RunState(StrEnum):
    SCHEDULED = "scheduled"  # stored to start at a later time (`weft run --at`); it holds no lock yet
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNDONE = "undone"


class Stage(StrEnum):
    """Where the orchestrator of a run is."""

    RUN = "run"
    FINALIZE = "finalize"
    HOOKS = "hooks"  # the on success / on failure steps, once the outcome is decided
    ROLLBACK = "rollback"


class Halt(StrEnum):
    """Why no new step may start while running ones finish (the first three are also `on error` policies)."""

    PAUSE = "pause"
    FAIL = "fail"
    ROLLBACK = "rollback"
    CANCEL = "cancel"


RUN_STATES = tuple(RunState)
RUN_ENDED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
RUN_STOPPED = RUN_ENDED | {RunState.PAUSED}
DONE = frozenset({StepState.SUCCEEDED, StepState.SKIPPED})  # dependents may go on
UNFINISHED = frozenset({StepState.PENDING, StepState.RUNNING, StepState.SUSPENDED})
ACTIVE = frozenset({StepState.RUNNING, StepState.SUSPENDED})  # an attempt is under way


def new_step() -> StepRecord:
    """A step record before its first attempt."""
    return {
        "state": StepState.PENDING,
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


def new_steps(plan: dict) -> dict[str, StepRecord]:
    """The step records of a run just made from `plan` (as a new run's steps are stored: no need to read them)."""
    return {s["id"]: new_step() for s in plan["steps"]}


def new_run(
    run_id: str,
    plan: Plan,
    inputs: dict,
    *,
    label: str | None,
    locks: list[str],
    user: str,
    now: float,
    parent: dict | None = None,
) -> RunRecord:
    """A run record in state `pending`; `parent` ({"run", "step", "index"}) links a sub-run to its `each` step."""
    return {
        "id": run_id,
        "flow": plan["flow"],
        "file": plan.get("file"),
        "label": label,
        "tags": list(plan.get("tags") or ()),
        "locks": locks,
        "user": user,
        "state": RunState.PENDING,
        "created": now,
        "started": None,
        "ended": None,
        "inputs": inputs,
        "result": None,
        "error": None,
        "progress": 0.0,
        "stage": Stage.RUN,
        "halt": None,
        "ending": None,
        "rolled_back": False,
        "parent": parent,
        "secrets": secret_params(plan),  # its inputs shown as *** (they stay here in clear for the runtime)
    }


def outcome(run: RunRecord) -> str | None:
    """How an ended run came out: succeeded, failed, cancelled or rolled back; None before it ends."""
    if run["state"] not in RUN_ENDED:
        return None
    return "rolled back" if run.get("rolled_back") else run["state"]


def error_record(kind: str, message: str, traceback: str | None = None) -> ErrorRecord:
    return {"type": kind, "message": message, "traceback": traceback}


def describe_error(error: ErrorRecord | None) -> str:
    if not error:
        return ""
    return f"{error['type']}: {error['message']}" if error.get("type") else error["message"]


def step_failed(sid: str, error: ErrorRecord | None) -> str:
    """A run's error naming the failed step that stopped it: `step dhcp failed: Timeout: timed out after 2s`."""
    return f"step {sid} failed: {describe_error(error)}"


def elapsed(rec: dict, now: float) -> str | None:
    """How long a step (or undo) record has been going at `now`, as history shows it ("1.5s")."""
    return None if rec.get("started") is None else f"{now - rec['started']:.1f}s"


def redoable(action: dict | None) -> bool:
    """Whether calling `action` again after a crash is harmless: it is pure or idempotent."""
    return action is not None and bool(action.get("idempotent") or action.get("pure"))
