"""What the Client's other operations return: locks, prunes, deliveries, the feed's changes, worker processes,
schedules, bulk commands, rollback previews and diagrams (frozen dataclasses, as model.py's).

Apart from model.py's runs, steps and events so that a process that only starts, drives or shows runs does not
make these classes (`weft.client` imports this module on first use of one of its names).
"""

from __future__ import annotations

from weft.client.model import Event, Record, Run, RunSummary, record  # (the first three: fields' types)
from weft.client.redact import Redactor
from weft.plan.secrets import secret_params


@record
class Lock(Record):
    """A lock held by a run that has not ended."""

    name: str
    run: RunSummary


@record
class Pruned(Record):
    """What `prune` did."""

    removed: int  # runs deleted, sub-runs included
    sub_runs: int  # of which sub-runs
    kept: int  # old enough, but a sub-run has not ended or a live process holds one
    cutoff: float  # runs that ended before this were pruned


@record
class Delivery(Record):
    """What became of a signal or a cancel: done here, or handed to the process or workers driving the run."""

    run_id: str
    name: str  # the signal's name, or "cancel"
    how: str  # "delivered", "owner" (another live process drives the run), "workers" (detached run)
    run: Run | None = None  # as the command left it (a cancel: always)


@record
class Change(Record):
    """One event of a run's history as displays that follow runs live see it, with the run's state now."""

    place: int | None  # in the store's feed of all runs (None: read from one run's history)
    run_id: str
    run_state: str | None  # None: the run was deleted since
    progress: float | None
    event: Event


@record
class Changes(Record):
    """A page of the feed: the changes after a place, and the last place read (where the next page starts)."""

    items: tuple[Change, ...]
    end: int


@record
class WorkerProcess(Record):
    """A process serving the store's runs: `weft worker`, or the worker inside `weft serve`."""

    pid: int
    host: str
    kind: str  # "worker" or "server"
    started: float
    heartbeat: float
    limit: int  # runs it drives at once
    runs: tuple[str, ...]  # the runs it drives now


@record
class ScheduleEntry(Record):
    """What a schedule did with one slot: "fire" (started `run`), "skip", "miss", "wait", "cancel", "trigger"."""

    slot: float
    t: float
    what: str
    note: str | None
    run: str | None


@record
class Schedule(Record):
    """A schedule: which flow it starts with which inputs, when, and what it did."""

    name: str
    flow: str
    file: str | None
    inputs: dict
    cron: str | None
    every: float | None  # seconds between slots, when not a cron line
    tz: str
    start: float
    until: float | None
    max_runs: int | None
    overlap: str
    catchup: float
    jitter: float
    paused: bool
    note: str | None  # why it was paused
    created: float
    fired: int  # runs it started
    last_run: str | None
    upcoming: tuple[float, ...]  # its next slot times
    history: tuple[ScheduleEntry, ...]  # newest last


@record
class Refusal(Record):
    """A run a bulk operation did not act on, and why."""

    id: str
    reason: str
    state: str | None  # the run's state when it was refused


@record
class Bulk(Record):
    """What a command given to many runs did: runs done, refused (with why) and ids that name no run."""

    done: tuple[str, ...]
    refused: tuple[Refusal, ...]
    missing: tuple[str, ...]


@record
class RollbackPreview(Record):
    """What `rollback` would do now: the steps whose undo it runs, and succeeded steps that have none."""

    run_id: str
    undo: tuple[str, ...]
    without_undo: tuple[str, ...]


@record
class Diagram(Record):
    """What a run's diagram shows: its Plan, each step's state, each `each` step's sub-runs by state."""

    plan: dict
    states: dict[str, str]
    counts: dict[str, dict[str, int]]


def schedule_of(rec: dict, upcoming: list[float]) -> Schedule:
    return Schedule(
        name=rec["name"],
        flow=rec["plan"]["flow"],
        file=rec["plan"].get("file"),
        inputs=Redactor({"inputs": rec["inputs"], "secrets": secret_params(rec["plan"])}).run(rec)["inputs"],
        cron=rec.get("cron"),
        every=rec.get("every"),
        tz=rec.get("tz") or "UTC",
        start=rec["start"],
        until=rec.get("until"),
        max_runs=rec.get("max_runs"),
        overlap=rec["overlap"],
        catchup=rec.get("catchup") or 0.0,
        jitter=rec.get("jitter") or 0.0,
        paused=bool(rec.get("paused")),
        note=rec.get("note"),
        created=rec["created"],
        fired=rec.get("fired", 0),
        last_run=rec.get("last_run"),
        upcoming=tuple(upcoming),
        history=tuple(
            ScheduleEntry(e["slot"], e["t"], e["what"], e.get("note"), e.get("run")) for e in rec.get("history") or ()
        ),
    )
