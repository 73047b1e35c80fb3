"""The Plan's schema and version, and the records a run keeps: written by the compiler, read by the runtime.

docs/plan-format.md documents every field. Everything here is plain data
(dict, list, str, int, float, bool, None) that msgpack round-trips exactly:
a run stores its own copy of its Plan, and its records travel to stores and
executors as they are. The TypedDicts name the keys; the runtime still reads
them as dicts (`step["deps"]`), so a stored record is its own type.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from weft.errors import WeftError

PLAN_FORMAT = "weft.plan"
PLAN_VERSION = 2  # 2: the dflt and opt expressions, an each step's results (docs/plan-format.md)

Expr = Any  # an expression: nested lists, see weft.plan.expr
TypeData = Any  # a type: nested lists, see weft.plan.types.to_data


# -- the Plan ------------------------------------------------------------------------------


class ActionRef(TypedDict):
    """Where an action lives: `weft.sdk.actions.lookup(module, name)`."""

    module: str
    name: str
    idempotent: bool
    pure: bool


class UndoSpec(TypedDict):
    action: ActionRef
    inputs: dict[str, Expr]


class EachSpec(TypedDict):
    var: str
    items: Expr
    concurrency: int | None
    plan: Plan


class WaitSpec(TypedDict):
    signal: str
    fields: TypeData


class StepSpec(TypedDict):
    """One step of a Plan (docs/plan-format.md, "Step")."""

    id: str
    name: str | None
    phase: str  # "run", "finalize", "success" or "failure"
    kind: str  # "action", "wait" or "each"
    action: ActionRef | None
    inputs: dict[str, Expr]
    outputs: TypeData
    deps: list[str]
    data: list[dict[str, Any]]
    after: list[str]
    retry: int
    backoff: float
    timeout: float | None
    on_error: str | None
    when: Expr | None
    weight: float
    queue: NotRequired[Expr | None]  # a string expression: the executor queue of its action call; absent in older Plans
    concurrency: NotRequired[int | None]  # its calls in flight at once, in the run and sub-runs; absent: no bound
    undo: UndoSpec | None
    each: EachSpec | None
    wait: WaitSpec | None
    origin: dict[str, Any] | None
    span: dict[str, Any]
    level: int
    remaining: float
    critical: bool
    secret: list[str]  # the inputs computed from a secret parameter: shown as ***


class Plan(TypedDict):
    """A compiled flow (docs/plan-format.md, "Plan")."""

    format: str
    version: int
    flow: str
    file: str | None
    search_path: list[str]
    params: list[dict[str, Any]]
    results: list[dict[str, Any]]
    returns: dict[str, Expr]
    label: Expr | None
    tags: list[str]
    locks: list[Expr]
    on_error: str
    steps: list[StepSpec]
    critical_path: list[str]
    extensions: list[dict[str, Any]]


def check_plan(plan: Any) -> None:
    """A WeftError unless `plan` is a compiled Plan this version of Weft reads."""
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise WeftError("not a compiled weft plan")
    if plan.get("version", 0) > PLAN_VERSION:
        raise WeftError(f"plan format version {plan['version']} is newer than this weft reads ({PLAN_VERSION})")


# -- a run's records -----------------------------------------------------------------------


class ErrorRecord(TypedDict):
    """Why a step, an undo or an action call failed."""

    type: str
    message: str
    traceback: str | None


class PollRecord(TypedDict):
    """A polling step's handle and timer, kept in its step record between polls."""

    handle: Any  # what the action's `start` returned
    every: float  # its PollSpec
    max_every: float
    factor: float
    interval: float  # seconds before the poll now awaited
    polls: int  # polls made
    progress: float | None  # last reported


class UndoRecord(TypedDict):
    state: str | None  # "running", "succeeded", "failed"; None: to run again
    attempt: int
    started: float | None
    ended: float | None
    error: ErrorRecord | None


class TaskCancelRecord(TypedDict):
    """The `cancel` of a polling action, asked for the task that attempt `attempt` started (`handle`)."""

    attempt: int
    handle: Any
    state: str  # pending (asked, not answered yet), cancelled, failed, none (the action has no cancel)
    detail: str | None


class CallRecord(TypedDict):
    """A step's attempt sent to an agent as call `id`; `agent` names who took it, once one did."""

    id: str
    attempt: int
    agent: str | None


class StepRecord(TypedDict):
    """Where one step of a run is (weft.runtime.core.states describes the states)."""

    state: str
    attempts: int
    retries_used: int
    started: float | None
    ended: float | None
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    error: ErrorRecord | None
    due: float | None  # when it may start again (a retry) or be polled next
    deadline: float | None  # when its `timeout` runs out
    poll: PollRecord | None
    undo: UndoRecord | None
    cancel: NotRequired[TaskCancelRecord]  # a polling step's external task, asked to stop
    queue: NotRequired[str]  # the executor queue its latest attempt was sent to (steps that name one only)
    call: NotRequired[CallRecord]  # its attempt sent to an agent


class RunRecord(TypedDict, total=False):
    """One run: its metadata, where the orchestrator is (`stage`, `halt`) and how it came out."""

    id: str
    flow: str
    file: str | None
    label: str | None
    tags: list[str]
    locks: list[str]
    user: str
    state: str
    created: float
    started: float | None
    ended: float | None
    inputs: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    progress: float
    stage: str  # "run", "finalize", "hooks" or "rollback"
    halt: str | None  # "pause", "fail", "rollback" or "cancel"
    ending: str | None  # the outcome decided before the hooks run
    rolled_back: bool
    parent: dict[str, Any] | None  # {"run", "step", "index"} of a sub-run's `each` step
    detached: bool  # served by `weft worker`
    driver: dict[str, Any]  # {"pid", "host"} of the process that drove it last (engine/family.py)
    secrets: list[str]  # its inputs that are secret (weft.plan.secrets): shown as ***
    forced: bool  # rolled back with --force: steps without an undo, in child runs too, are left done
