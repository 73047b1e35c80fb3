"""What the Client returns of runs: frozen dataclasses made from the store's records, never the records themselves
(answers.py holds those of its other operations)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from weft.client.redact import Redactor
from weft.runtime.core.states import RUN_ENDED, describe_error, outcome
from weft.runtime.engine import bulk
from weft.runtime.engine.lease import holder_alive

ACTIONS = ("resume", "skip", "rerun", "cancel", "rollback", "signal")


class Record:
    """What the Client's frozen dataclasses share (`@record`): equality, hashing and repr by their fields, as
    `@dataclass(frozen=True)` makes them, but written once here instead of compiled for each class at start-up."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _compared(self) == _compared(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_compared(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{self.__class__.__qualname__}({shown})"


def _compared(r: Record) -> tuple:
    return tuple(getattr(r, f.name) for f in fields(r) if f.compare)


record = dataclass(frozen=True, eq=False, repr=False)  # with Record: what @dataclass(frozen=True) would make


@record
class Event(Record):
    """One entry of a run's history: a state change (`state`, `detail`), a `log` line or a `note`."""

    seq: int | None  # position in the history, from 1 (None for an event reported live before it was read back)
    t: float
    step: str | None = None
    state: str | None = None
    detail: str | None = None
    attempt: int | None = None
    log: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, e: dict, seq: int | None = None) -> Event:
        return cls(seq, e["t"], *(e.get(k) for k in ("step", "state", "detail", "attempt", "log", "note")))


@record
class StepError(Record):
    """Why a step failed: the exception's type, its message and (shown with the step alone) its traceback."""

    type: str | None
    message: str
    traceback: str | None = None

    @classmethod
    def of(cls, error: dict | None) -> StepError | None:
        return None if not error else cls(error.get("type"), error.get("message") or "", error.get("traceback"))

    def __str__(self) -> str:
        return describe_error({"type": self.type, "message": self.message})


@record
class Undo(Record):
    """The undo of a succeeded step, once a rollback started it."""

    state: str | None  # running, succeeded, failed; None: to be run again
    attempt: int
    started: float | None
    ended: float | None
    error: StepError | None


@record
class Poll(Record):
    """A polling step between polls: the external task's handle and how polling goes."""

    handle: Any
    polls: int
    progress: float | None
    interval: float | None


@record
class TaskCancel(Record):
    """The cancel of the external task a polling step started, once the run stopped waiting for that task."""

    state: str  # "pending" (not answered yet), "cancelled", "failed" (it raised or did not answer), "none" (no cancel)
    attempt: int
    detail: str | None  # why it was not cancelled

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


@record
class SubRun(Record):
    """One sub-run of an `each` step: its id, its item's index, its state and label."""

    id: str
    index: int
    state: str
    label: str | None


@record
class SubRuns(Record):
    """The sub-runs of an `each` step: counts and, in item order, the runs themselves."""

    done: int
    failed: int
    total: int
    counts: dict[str, int]  # state -> sub-runs
    runs: tuple[SubRun, ...]


@record
class Origin(Record):
    """Where a step added by an `extend` block was written."""

    extension: str
    line: int


@record
class Step(Record):
    """One step of a run: its spec's outline and its record (state, attempts, inputs, outputs, error...)."""

    id: str
    name: str | None
    phase: str
    kind: str
    action: str | None  # module.name of the action it calls
    origin: Origin | None
    state: str
    attempts: int
    started: float | None
    ended: float | None
    inputs: dict | None
    outputs: dict | None
    error: StepError | None
    undo: Undo | None
    due: float | None  # next retry or poll
    deadline: float | None  # when its timeout runs out
    poll: Poll | None
    signal: str | None  # a `wait` step: the signal it waits for
    sub_runs: SubRuns | None  # an `each` step
    outputs_type: list | None  # its outputs' type as Plan type data (weft.plan.types.to_data): what a skip gives
    signal_fields: list | None  # a `wait` step: the signal's fields' type as Plan type data
    cancel: TaskCancel | None = None  # a polling step whose external task the run stopped waiting for
    queue: str | None = None  # the executor queue its latest attempt was sent to (None: the default queue)
    agent: str | None = None  # the agent that took its latest attempt's call (None: run locally, or not taken yet)


@record
class StepDetail(Record):
    """One step in full: what `weft show RUN STEP` prints."""

    run_id: str
    step: Step
    deps: tuple[str, ...]
    undo_action: str | None
    history: tuple[Event, ...]  # the step's own events


@record
class Owner(Record):
    """The process holding a run's lease."""

    pid: int
    host: str
    heartbeat: float
    alive: bool


@record
class Parent(Record):
    """The run, `each` step and item index that made a sub-run."""

    run: str
    step: str
    index: int


@record
class Slot(Record):
    """The schedule that started a run, and the slot (a time) the run fills."""

    name: str
    slot: float


@record
class RunSummary(Record):
    """A run as lists show it: its metadata, without steps or history."""

    id: str
    flow: str
    file: str | None
    label: str | None
    tags: tuple[str, ...]
    user: str | None
    locks: tuple[str, ...]
    parent: Parent | None
    state: str
    outcome: str | None  # succeeded, failed, cancelled or rolled back, once ended
    rolled_back: bool
    progress: float  # of its steps done; in a rollback, of the steps to undo undone
    created: float
    started: float | None
    ended: float | None
    inputs: dict
    result: dict | None
    error: str | None
    detached: bool
    owner: Owner | None  # the process holding its lease, if one does
    due: float | None  # a scheduled run: when it starts
    start_by: float | None  # ... and the deadline to start by
    schedule: Slot | None  # the schedule that started it

    @property
    def orphaned(self) -> bool:
        """Not ended, and the process that drove it is gone: `resume` goes on, `cancel` stops it."""
        return self.state not in RUN_ENDED and self.owner is not None and not self.owner.alive


@record
class Run(RunSummary):
    """One run in full: steps, history, and which steering commands fit it now."""

    steps: tuple[Step, ...]  # every step in plan order, or a page of them (see steps_total)
    history: tuple[Event, ...]  # every event, or the last of them (see history_total)
    actions: tuple[str, ...]  # of ACTIONS, sorted (the same order in every process)
    waiting_for: tuple[str, ...]  # signals that suspended steps wait for
    counts: dict[str, dict[str, int]]  # phase -> state -> how many of all its steps are in it
    steps_total: int  # steps of the run in all
    history_total: int  # events of its history in all

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.id == name or s.name == name), None)

    @property
    def failed_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.state == "failed")


@record
class Page(Record):
    """One page of `runs()`: the runs from `offset` on (at most `limit`), `total` matches in all."""

    runs: tuple[RunSummary, ...]
    offset: int
    limit: int
    more: bool  # more runs match after this page
    total: int


@record
class Progress(Record):
    """What a run driven by this process reports after each commit (see Client.drive)."""

    run_id: str
    events: tuple[Event, ...]  # durable already
    running: tuple[str, ...]  # steps running or polling
    fractions: dict[str, float]  # their reported progress
    done: float  # the run's progress, 0 to 1
    # running, fractions and done as they are now, for displays that refresh between commits
    current: Callable[[], tuple[tuple[str, ...], dict[str, float], float]] | None = field(
        default=None, compare=False, repr=False
    )


# -- from records ---------------------------------------------------------------------------------


def summary(run: dict, lease: dict | None, now: float) -> RunSummary:
    return RunSummary(**_summary_fields(run, lease, now))


def owner(lease: dict | None, now: float) -> Owner | None:
    return None if lease is None else Owner(lease["pid"], lease["host"], lease["heartbeat"], holder_alive(lease, now))


def _summary_fields(run: dict, lease: dict | None, now: float) -> dict[str, Any]:
    run = Redactor(run).run(run)
    parent = run.get("parent")
    return dict(
        id=run["id"],
        flow=run["flow"],
        file=run.get("file"),
        label=run.get("label"),
        tags=tuple(run.get("tags") or ()),
        user=run.get("user"),
        locks=tuple(run.get("locks") or ()),
        parent=Parent(parent["run"], parent["step"], parent["index"]) if parent else None,
        state=run["state"],
        outcome=outcome(run),
        rolled_back=bool(run.get("rolled_back")),
        progress=run.get("progress") or 0.0,
        created=run["created"],
        started=run.get("started"),
        ended=run.get("ended"),
        inputs=run.get("inputs") or {},
        result=None if run.get("rolled_back") else run.get("result"),  # undone: no longer the run's result
        error=run.get("error"),
        detached=bool(run.get("detached")),
        owner=owner(lease, now),
        due=run.get("due"),
        start_by=run.get("start_by"),
        schedule=Slot(run["schedule"]["name"], run["schedule"]["slot"]) if run.get("schedule") else None,
    )


def _action_name(action: dict | None) -> str | None:
    return None if not action else f"{action['module']}.{action['name']}"


def sub_runs(rec: dict, runs: list[dict]) -> SubRuns:
    done = bulk.progress(rec, runs)
    return SubRuns(
        done["done"],
        done["failed"],
        done["total"],
        dict(sorted(Counter(r["state"] for r in runs).items())),
        tuple(SubRun(r["id"], r["parent"]["index"], r["state"], r.get("label")) for r in runs),
    )


def step(spec: dict, rec: dict, children: list[dict] | None) -> Step:
    undo, poll, origin = rec.get("undo"), rec.get("poll"), spec.get("origin")
    return Step(
        id=spec["id"],
        name=spec.get("name"),
        phase=spec["phase"],
        kind=spec["kind"],
        action=_action_name(spec.get("action")),
        origin=Origin(origin["extension"], origin["line"]) if origin else None,
        state=rec["state"],
        attempts=rec["attempts"],
        started=rec["started"],
        ended=rec["ended"],
        inputs=rec["inputs"],
        outputs=rec["outputs"],
        error=StepError.of(rec["error"]),
        undo=None
        if not undo
        else Undo(
            undo.get("state"),
            undo.get("attempt", 0),
            undo.get("started"),
            undo.get("ended"),
            StepError.of(undo.get("error")),
        ),
        due=rec.get("due"),
        deadline=rec.get("deadline"),
        poll=None
        if not poll
        else Poll(poll.get("handle"), poll.get("polls", 0), poll.get("progress"), poll.get("interval")),
        signal=spec["wait"]["signal"] if spec["kind"] == "wait" else None,
        sub_runs=None if children is None else sub_runs(rec, children),
        outputs_type=spec.get("outputs"),
        signal_fields=spec["wait"].get("fields") if spec["kind"] == "wait" else None,
        cancel=None
        if not rec.get("cancel")
        else TaskCancel(**{k: rec["cancel"][k] for k in ("state", "attempt", "detail")}),
        queue=rec.get("queue"),
        agent=_agent(rec),
    )


def _agent(rec: dict) -> str | None:
    call = rec.get("call")
    return call["agent"] if call and call["attempt"] == rec["attempts"] else None


def actions(run: dict, failed: bool, signals: bool, owner: Owner | None) -> frozenset[str]:
    """Which steering commands fit the run now (a command may still be refused for a reason found later)."""
    state = run["state"]
    if state in RUN_ENDED:
        if run.get("rolled_back") or run.get("stage") == "rollback":
            return frozenset() if run.get("rolled_back") else frozenset({"rollback"})
        return frozenset({"rollback"} if state == "cancelled" else {"rollback", "rerun"})
    if state == "scheduled":
        return frozenset({"cancel"})
    driven = owner is not None and owner.alive
    allowed = {"cancel"}
    if not driven:
        allowed |= {"resume", "rollback"}
        if state == "paused":
            allowed.add("rerun")
        if failed:
            allowed.add("skip")
    if signals:
        allowed.add("signal")
    return frozenset(allowed)


@record
class Overview(Record):
    """What a run's page says of all its steps, whichever of them it shows."""

    counts: dict[str, dict[str, int]]  # phase -> state -> steps, phases in plan order, states by name
    steps_total: int
    signals: dict[str, str]  # suspended `wait` step -> the signal it waits for
    history_total: int


def counts(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Phase -> state -> steps of (phase, state) pairs in plan order: phases in that order, states by name."""
    by_phase: dict[str, dict[str, int]] = {}
    for (phase, state), n in Counter(pairs).items():
        by_phase.setdefault(phase, {})[state] = n
    return {phase: dict(sorted(states.items())) for phase, states in by_phase.items()}


def full(
    run: dict,
    specs: list[dict],
    recs: dict[str, dict],
    history: list[tuple[int, dict]],
    lease: dict | None,
    children: dict[str, list[dict]],
    now: float,
    seen: Overview,
) -> Run:
    """The run with the steps of `specs` (every step, or a page of them) and `history` (all of it, or its end)."""
    fields = _summary_fields(run, lease, now)
    hide = Redactor(run)
    history = hide.history(history)
    steps = tuple(step(spec, hide.step(spec, recs[spec["id"]]), children.get(spec["id"])) for spec in specs)
    failed = any("failed" in states for states in seen.counts.values())
    return Run(
        **fields,
        steps=steps,
        history=tuple(Event.of(e, seq) for seq, e in history),
        actions=tuple(sorted(actions(run, failed, bool(seen.signals), fields["owner"]))),
        waiting_for=tuple(sorted(set(seen.signals.values()))),
        counts=seen.counts,
        steps_total=seen.steps_total,
        history_total=seen.history_total,
    )


def detail(run_id: str, spec: dict, st: Step, history: list[tuple[int, dict]]) -> StepDetail:
    return StepDetail(
        run_id,
        st,
        tuple(spec.get("deps") or ()),
        _action_name((spec.get("undo") or {}).get("action")),
        tuple(Event.of(e, seq) for seq, e in history if e.get("step") == st.id),
    )
