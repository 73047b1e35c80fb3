"""What can happen to a run: the events `Machine.apply(event, now)` takes.

Outcomes of the work the machine handed out (an action, a poll, an undo),
reports while it runs, and the commands of a person or of a new owner
process. Each is a dataclass of plain values, never changed once made (not
frozen: a frozen dataclass takes four times as long to make, and a step makes
several). A new kind of event is a dataclass here and one case in
`Machine.apply`. A Launch is the other way: work the machine hands out
(`Machine.launches`); so is a CancelTask (`Machine.cancellations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weft.plan.schema import ActionRef, ErrorRecord

# -- outcomes and reports of launched work ----------------------------------------------------


@dataclass(slots=True)
class Succeeded:
    """Attempt `attempt` of `step` (its undo, with `undo`) returned `outputs`; a poll returned them too."""

    step: str
    attempt: int
    outputs: dict[str, Any] = field(default_factory=dict)
    undo: bool = False


@dataclass(slots=True)
class Failed:
    """Attempt `attempt` of `step` (its undo, with `undo`) raised: `error`."""

    step: str
    attempt: int
    error: ErrorRecord
    undo: bool = False


@dataclass(slots=True)
class PollStarted:
    """A polling action's `start` returned `handle`: poll it every `every` s, growing by `factor` up to `max_every`."""

    step: str
    attempt: int
    handle: Any
    every: float
    max_every: float
    factor: float


@dataclass(slots=True)
class PollPending:
    """A poll found the external task still going, `progress` done (None: not said)."""

    step: str
    attempt: int
    progress: float | None = None


@dataclass(slots=True)
class Progressed:
    """The running action of attempt `attempt` of `step` reported `fraction` done."""

    step: str
    attempt: int
    fraction: float


@dataclass(slots=True)
class Woken:
    """What polling step `step` waits for moved (a child run of an `each` step stopped): poll it now."""

    step: str


@dataclass(slots=True)
class TaskCancelled:
    """The `cancel` of the external task that attempt `attempt` of polling step `step` started was called:
    `outcome` is "cancelled", "failed" (it raised, or did not answer; `detail` says) or "none" (the action
    defines no `cancel`: the task goes on)."""

    step: str
    attempt: int
    outcome: str
    detail: str | None = None


@dataclass(slots=True)
class Logged:
    """The action of `step` logged `line` at time `at`."""

    step: str
    line: str
    at: float


@dataclass(slots=True)
class Dispatched:
    """Attempt `attempt` of `step` is to be sent to an agent as call `call` (recorded before it is sent)."""

    step: str
    attempt: int
    call: str


@dataclass(slots=True)
class Placed:
    """Agent `agent` took call `call` of `step` and runs it now."""

    step: str
    attempt: int
    call: str
    agent: str


@dataclass(slots=True)
class Lost:
    """The agent running attempt `attempt` of `step` stopped answering (`detail`): as if its process had died."""

    step: str
    attempt: int
    detail: str


@dataclass(slots=True)
class Driven:
    """Process `pid` on `host` drives the run now: the run record says so (a child run records its driver)."""

    pid: int
    host: str


# -- commands ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Recover:
    """A new owner took the run over: re-run what was running if idempotent, else fail it for a person."""


@dataclass(slots=True)
class Resume:
    """Retry the failed steps of a paused run and go on.

    A failed polling step goes on polling the external task it started, unless
    it is in `restart`: then its `start` is called again (a second external task).
    """

    restart: tuple[str, ...] = ()


@dataclass(slots=True)
class Skip:
    """Mark failed step `step` skipped, with hand-given `outputs`, so its dependents go on."""

    step: str
    outputs: dict[str, Any] | None = None


@dataclass(slots=True)
class Cancel:
    """Cancel what is not running; the run ends cancelled once running steps finish.

    `by` (who asked) goes into the history as a note, even when the cancel is refused.
    """

    by: str | None = None


@dataclass(slots=True)
class Rollback:
    """Undo every succeeded step in reverse dependency order (`force`: even with steps that have no undo).

    An undo interrupted while it ran is left for a person: named in `retry`, it
    runs again; in `skip`, it counts as done. Without either, the rollback is refused.
    """

    force: bool = False
    retry: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


@dataclass(slots=True)
class Rerun:
    """Run `steps` again (with `with_dependents`, every step downstream of them too) on a paused or ended run.

    `by` (who asked) goes into the history. See `Steering._rerun`.
    """

    steps: tuple[str, ...]
    with_dependents: bool = False
    by: str | None = None


@dataclass(slots=True)
class Signal:
    """Signal `name` arrived with `fields`: the steps waiting for it succeed with them as outputs."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)


Event = (
    Succeeded
    | Failed
    | Dispatched
    | Placed
    | Lost
    | PollStarted
    | PollPending
    | Woken
    | TaskCancelled
    | Progressed
    | Logged
    | Driven
    | Recover
    | Resume
    | Skip
    | Cancel
    | Rollback
    | Rerun
    | Signal
)


@dataclass(slots=True)
class Launch:
    """Start `action` with `inputs` for attempt `attempt` of `step` (its undo when `undo`)."""

    step: str
    attempt: int
    action: ActionRef | None
    inputs: dict
    deadline: float | None
    undo: bool = False
    items: list | None = None  # an `each` step's items: one sub-run each
    poll: dict | None = None  # a suspended polling step's poll record: poll its handle once
    queue: str | None = None  # the executor queue the call goes to (None: the default queue)


@dataclass(slots=True)
class CancelTask:
    """Call the `cancel` of polling `action` with `handle`: the machine no longer waits for that external task."""

    step: str
    attempt: int
    action: ActionRef
    handle: Any
