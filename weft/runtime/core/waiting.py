"""Steps that wait without holding a worker: polling actions, signal waits, timeouts; the Machine's timers.

A polling step is `running` while its action's `start` is called, then
`suspended` with a poll record in its step record (schema.PollRecord: the
handle `start` returned, its PollSpec, the interval now awaited, polls made,
progress last reported) and `due`, the time of its next poll. When `due`
comes, `launches` hands out a Launch with `poll` set; a worker polls once; a
PollPending schedules the next poll (intervals grow by `factor` up to
`max_every`), outputs end the step as any action's would. A poll that raises
is taken as transient: the same handle is polled again after a backoff (the
step's `backoff`, else its poll interval, doubling), up to max(`retry`,
POLL_RETRIES) times in a row; `start` is never called again. Past that the
step fails through its error policy and keeps its poll record, so `resume`
goes on polling the same external task (unless a person asks for a restart).
No worker is held in between, and
the handle and next poll are persisted, so a new owner goes on polling after a
restart. A run does not pause or fail while a polling step is suspended: like
a running step, it is waited for.

A step with a `timeout` records its absolute `deadline` when it starts (a
signal wait: when it suspends), so the limit holds across restarts: a step
found past its deadline when a run is taken over fails with a Timeout.

When the machine stops waiting for the external task a polling step started
(the run is cancelled, the step times out, a rollback finds it failed or
still waiting), it records a cancel in the step record (`cancel`: the
attempt, the handle, state "pending") and hands it out once
(`cancellations`); the driver calls the action's `cancel` and answers with a
TaskCancelled, recorded in the history and in the record ("cancelled",
"failed" or "none"). A pending cancel found in a record when a run is taken
over is handed out again.

`Waiting` holds the Machine's operations on all of this (machine.py joins it
into the Machine); the functions below it only read.
"""

from __future__ import annotations

import heapq

from weft.plan.schema import ErrorRecord, StepRecord, StepSpec
from weft.runtime.core import events as ev
from weft.runtime.core.events import CancelTask, Launch
from weft.runtime.core.states import ACTIVE, Halt, RunState, StepState, describe_error, error_record
from weft.runtime.core.timers import TimerKind, retry_delay, step_timers
from weft.sdk.polling import PollSpec

POLL_RETRIES = 3  # polls in a row that may raise before the step fails, when its `retry` allows fewer


class Waiting:
    """The Machine's timers, polls and deadlines (a part of the Machine class: its state is the Machine's)."""

    def next_timer(self) -> float | None:
        """When the earliest timer is due, or None."""
        return self.timers[0].due if self.timers else None

    def waiting_only(self, polls: bool = False) -> bool:
        """Nothing runs, is ready or awaits a retry: the run waits for signals alone
        (or, with `polls`, for signals and the next polls of its polling steps)."""
        if self.run["state"] != RunState.RUNNING or self.running or self.undoing or self.ready:
            return False
        if self.polling and not polls:
            return False
        return not any(
            t.kind == TimerKind.RETRY
            and self.steps[t.step]["state"] == StepState.PENDING
            and self.steps[t.step]["attempts"] == t.attempt
            for t in self.timers
        )

    def _arm(self, sid: str, *kinds: TimerKind) -> None:
        """Put the timers of kinds `kinds` that the record of `sid` calls for on the heap."""
        for timer in step_timers(sid, self.steps[sid]):
            if timer.kind in kinds:
                heapq.heappush(self.timers, timer)

    def _tick(self, now: float) -> None:
        """Fire the timers that are due: retries, polls, deadlines."""
        while self.timers and self.timers[0].due <= now:
            timer = heapq.heappop(self.timers)
            sid = timer.step
            rec = self.steps[sid]
            if rec["attempts"] != timer.attempt:
                continue
            if timer.kind == TimerKind.RETRY:
                if rec["state"] == StepState.PENDING and rec["due"] is not None:
                    self._push_ready(sid)
            elif timer.kind == TimerKind.POLL:
                if is_polling(rec) and sid not in self.polls_out and (rec["due"] or 0) <= now:
                    self.poll_due[sid] = None
            elif rec["state"] in ACTIVE and overdue(rec, now):  # (not a deadline moved on: see steering._recover)
                self._time_out(sid, now)

    def _time_out(self, sid: str, now: float) -> None:
        """Step `sid` ran past its deadline: it fails with a Timeout (the external task it polls is cancelled)."""
        if is_polling(self.steps[sid]):
            self._forsake(sid, now)
        self._fail(sid, timeout_error(self.specs[sid]), now)

    def cancellations(self) -> list[CancelTask]:
        """The external tasks to cancel now, each handed out once (a TaskCancelled answers it)."""
        out = []
        for sid in self.to_cancel:
            cancel = self.steps[sid]["cancel"]
            out.append(CancelTask(sid, cancel["attempt"], self.specs[sid]["action"], cancel["handle"]))
        self.to_cancel.clear()
        return out

    def _forsake(self, sid: str, now: float, handle: object = None) -> None:
        """Wait no more for the external task step `sid` polls (or that `start` just returned `handle` for):
        its action's `cancel` is to be called, once per attempt. An `each` step's sub-runs go their own way."""
        rec = self.steps[sid]
        if self.specs[sid]["kind"] == "each" or (handle is None and rec.get("poll") is None):
            return
        asked = rec.get("cancel")
        if asked is not None and asked["attempt"] == rec["attempts"]:
            return
        handle = rec["poll"]["handle"] if handle is None else handle
        rec["cancel"] = {"attempt": rec["attempts"], "handle": handle, "state": "pending", "detail": None}
        self.to_cancel[sid] = None
        self.dirty.add(sid)

    def _task_cancelled(self, event: ev.TaskCancelled, now: float) -> list[str]:
        """The `cancel` of a step's external task was called: record how it went."""
        sid = event.step
        rec = self.steps[sid]
        asked = rec.get("cancel")
        if asked is None or asked["attempt"] != event.attempt or asked["state"] != "pending":
            return []
        rec["cancel"] = {**asked, "state": event.outcome, "detail": event.detail}
        self.dirty.add(sid)
        said = {"cancelled": "its external task was cancelled", "failed": "its external task could not be cancelled"}
        line = said.get(event.outcome, "its external task goes on")
        self.note(now, line + (f": {event.detail}" if event.detail else ""), step=sid)
        return [sid]

    def _launch_polls(self, slots: int) -> list[Launch]:
        """Up to `slots` polls that are due, each recorded as out until it is answered."""
        out: list[Launch] = []
        while self.poll_due and len(out) < slots:
            sid = next(iter(self.poll_due))
            del self.poll_due[sid]
            rec = self.steps[sid]
            if is_polling(rec) and sid not in self.polls_out:
                self.polls_out.add(sid)
                action = self.specs[sid]["action"]
                poll, queue = rec["poll"], rec.get("queue")  # polled where it started
                out.append(Launch(sid, rec["attempts"], action, {}, rec["deadline"], poll=poll, queue=queue))
        return out

    def _wake(self, sid: str, now: float) -> list[str]:
        """Poll step `sid` now rather than at its next poll (unless a poll of it is out already)."""
        rec = self.steps[sid]
        if not is_polling(rec) or sid in self.polls_out or rec["due"] is None or rec["due"] <= now:
            return []
        rec["due"] = now
        self.poll_due[sid] = None
        self.unsaved.add(sid)
        return [sid]

    def _poll_answered(self, event: ev.PollStarted | ev.PollPending, now: float) -> list[str]:
        """A polling action's `start` returned its handle, or a poll found its task still going."""
        sid = event.step
        rec = self.steps[sid]
        if rec["attempts"] != event.attempt:
            return []
        if isinstance(event, ev.PollStarted):
            if rec["state"] != StepState.RUNNING:
                return []
            if self.halt == Halt.CANCEL:  # cancelled while it started: nothing will poll it, its task is cancelled
                # (an `each`: its child runs are cancelled with it)
                self._forsake(sid, now, event.handle)
                self._set_step(sid, StepState.CANCELLED, now, "run cancelled", poll=None, due=None)
                return [sid]
            interval = PollSpec(event.every, event.max_every, event.factor).next_interval(None)
            poll = {
                "handle": event.handle,
                "every": event.every,
                "max_every": event.max_every,
                "factor": event.factor,
                "interval": interval,
                "polls": 0,
                "progress": None,
            }
            self._set_step(
                sid,
                StepState.SUSPENDED,
                now,
                f"started; first poll in {interval:g}s",
                poll=poll,
                due=now + interval,
                retries_used=0,  # from now on: polls in a row that raised
            )
        else:
            if not is_polling(rec):
                return []
            poll = rec["poll"]
            interval = PollSpec(poll["every"], poll["max_every"], poll["factor"]).next_interval(poll["interval"])
            progress = poll["progress"] if event.progress is None else event.progress
            rec["poll"] = {**poll, "interval": interval, "polls": poll["polls"] + 1, "progress": progress}
            rec["due"] = now + interval
            rec["retries_used"] = 0
            self.polls_out.discard(sid)
            if progress is not None:
                self.fractions[sid] = progress
            self.unsaved.add(sid)  # persisted with the next commit: if lost, the next owner just polls sooner
        self._arm(sid, TimerKind.POLL)
        return [sid]

    def _poll_failed(self, sid: str, error: ErrorRecord, now: float) -> None:
        """A poll of suspended step `sid` raised: poll the same handle again after a backoff, or fail the step."""
        rec, spec = self.steps[sid], self.specs[sid]
        self.polls_out.discard(sid)
        used, allowed = rec["retries_used"] + 1, max(spec["retry"], POLL_RETRIES)
        if used > allowed:
            self._fail(sid, error, now, retry=False)  # keeps the poll record: resume polls the same task
            return
        delay = retry_delay(spec["backoff"] or rec["poll"]["every"], used)
        detail = f"poll failed ({used} of {allowed}); polls again in {delay:g}s: {describe_error(error)}"
        self._set_step(sid, StepState.SUSPENDED, now, detail, retries_used=used, error=error, due=now + delay)
        self._arm(sid, TimerKind.POLL)

    def _polled(self, sid: str, attempt: int, outputs: dict, now: float) -> list[str]:
        """A poll returned the outputs: the step succeeded."""
        rec = self.steps[sid]
        if rec["attempts"] != attempt:
            return []
        polls = rec["poll"]["polls"] + 1
        self._set_step(
            sid,
            StepState.SUCCEEDED,
            now,
            f"{now - rec['started']:.1f}s, {polls} poll{'s' if polls > 1 else ''}",
            outputs=outputs,
            ended=now,
            due=None,
            poll={**rec["poll"], "polls": polls, "progress": 1.0},
        )
        self._release(sid, now)
        return [sid]

    def _settle(self, outcome: str, now: float) -> None:
        """The run ended: a step still waiting is cancelled, and no step keeps a timer."""
        for sid, rec in self.steps.items():
            if rec["state"] == StepState.SUSPENDED:
                if is_polling(rec):
                    self._forsake(sid, now)
                self._set_step(sid, StepState.CANCELLED, now, f"the run {outcome}", due=None)
            elif rec["state"] == StepState.PENDING and rec["due"] is not None:
                rec["due"] = None
                self.dirty.add(sid)


def pending_cancels(steps: dict[str, StepRecord]) -> dict[str, None]:
    """The steps whose external task's cancel was recorded but not answered (a new owner calls it again)."""
    return {sid: None for sid, rec in steps.items() if (rec.get("cancel") or {}).get("state") == "pending"}


def holds_task(rec: StepRecord) -> bool:
    """Whether a step stopped without the outcome of the external task it polled, and its cancel was not asked."""
    if rec.get("poll") is None or rec["state"] not in (StepState.SUSPENDED, StepState.FAILED):
        return False
    asked = rec.get("cancel")
    return asked is None or asked["attempt"] != rec["attempts"]


def is_polling(rec: StepRecord) -> bool:
    """Whether a step record is a polling action between polls."""
    return rec["state"] == _SUSPENDED and rec.get("poll") is not None


_SUSPENDED = StepState.SUSPENDED  # (read for every step: an enum class's attribute costs several times a global)


def timeout_error(spec: StepSpec) -> ErrorRecord:
    if spec["kind"] == "wait":
        return error_record("Timeout", f"no signal '{spec['wait']['signal']}' in time")
    return error_record("Timeout", f"timed out after {spec['timeout']:g}s")


def overdue(rec: StepRecord, now: float) -> bool:
    """Whether a step is past its deadline."""
    return rec["deadline"] is not None and rec["deadline"] <= now
