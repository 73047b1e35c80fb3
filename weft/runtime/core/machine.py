"""The orchestrator's pure core: which steps start, and what every event changes.

A Machine holds one run's Plan and records, and is the only writer of them.
It is told what happened through `apply(event, now)` (the events of
events.py: outcomes of actions, polls and undos, reports, and the commands of
steering.py) and answers `launches(now, slots)`: the work to start now,
already recorded as started. Every change lands in `changes()` (dirty
records plus history events) for the caller to persist *before* acting on the
launches. No threads, no store, no clock: `now` is always passed in.

Its operations live in four modules, one concern each: this one (stages,
outcomes, launches), steering.py (commands), waiting.py (timers, polls,
deadlines) and rollback.py (undos), joined as one class.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from functools import partial
from typing import Any

from weft.plan import expr
from weft.plan.schema import ErrorRecord, Plan, RunRecord, StepRecord
from weft.plan.secrets import mask, secret_values
from weft.plan.shared import uncollected
from weft.runtime.core import events as ev
from weft.runtime.core.events import Launch
from weft.runtime.core.rollback import Undoing
from weft.runtime.core.states import (
    ACTIVE,
    DONE,
    RUN_ENDED,
    UNFINISHED,
    Halt,
    RunState,
    Stage,
    StepState,
    describe_error,
    elapsed,
    error_record,
    step_failed,
)
from weft.runtime.core.steering import Steering
from weft.runtime.core.timers import Timer, TimerKind, retry_delay
from weft.runtime.core.waiting import Waiting, is_polling, overdue, pending_cancels
from weft.runtime.records import check_serializable

_HALT_RANK = {None: 0, Halt.PAUSE: 1, Halt.FAIL: 2, Halt.ROLLBACK: 3, Halt.CANCEL: 4}
# Members read for every step, bound once: reading an attribute of an enum class costs several times a global's.
_PENDING, _RUNNING, _SUCCEEDED, _UNDONE = StepState.PENDING, StepState.RUNNING, StepState.SUCCEEDED, StepState.UNDONE
_RUN_PENDING, _RUN_RUNNING, _CANCEL, _IN_ROLLBACK = RunState.PENDING, RunState.RUNNING, Halt.CANCEL, Stage.ROLLBACK
_RUN, _FINALIZE, _HOOKS, _DEADLINE = Stage.RUN, Stage.FINALIZE, Stage.HOOKS, TimerKind.DEADLINE
_WEIGHED = ("run", "finalize")  # the phases whose steps count towards a run's progress
PROGRESS_STEP = 0.01  # a run's stored progress is rewritten for itself alone once it moved by this much


class Machine(Steering, Waiting, Undoing):
    """One run's orchestration state; every public method takes the current time `now`."""

    def __init__(self, plan: Plan, run: RunRecord, steps: dict[str, StepRecord], now: float) -> None:
        with uncollected():
            self._build(plan, run, steps, now)

    def _build(self, plan: Plan, run: RunRecord, steps: dict[str, StepRecord], now: float) -> None:
        self.plan = plan
        self.run = run
        self.steps = steps
        self.specs = {s["id"]: s for s in plan["steps"]}
        self.each_steps = [sid for sid, spec in self.specs.items() if spec["kind"] == "each"]
        self.pos = {sid: i for i, sid in enumerate(self.specs)}
        self.events: list[dict] = []
        self.dirty: set[str] = set()
        self.unsaved: set[str] = set()  # changed, needing no commit of its own (a poll's Pending): rides along
        self.run_dirty = False
        self._saved_progress = run.get("progress") or 0.0  # as the store has it (see `changes`)
        self.running: set[str] = {sid for sid, r in steps.items() if r["state"] == StepState.RUNNING}
        self.undoing: set[str] = {
            sid for sid, r in steps.items() if (r["undo"] or {}).get("state") == StepState.RUNNING
        }
        self.polling: set[str] = {sid for sid, r in steps.items() if is_polling(r)}
        self.poll_due: dict[str, None] = {}  # polling steps whose poll is due, in order
        self.polls_out: set[str] = set()  # polling steps handed out for a poll, not answered yet
        self.to_cancel = pending_cancels(steps)  # steps whose external task is to be cancelled (waiting.py)
        self.fractions: dict[str, float] = {  # running or polling step -> progress it reported
            sid: steps[sid]["poll"]["progress"] for sid in self.polling if steps[sid]["poll"]["progress"] is not None
        }
        self.env = expr.Env(run["inputs"], partial(_outputs, steps))  # no cycle back to the machine
        self.deps: dict[str, list[str]] = {}
        dependents: dict[str, list[str]] = defaultdict(list)
        finalize_prev = None
        for sid, spec in self.specs.items():
            phase, listed = spec["phase"], spec["deps"]
            deps = [d for d in listed if d in self.specs and self.specs[d]["phase"] == phase]
            if phase == "finalize":
                if finalize_prev is not None and finalize_prev not in deps:
                    deps.append(finalize_prev)
                finalize_prev = sid
            self.deps[sid] = listed if deps == listed else deps  # (the Plan's own list, read only: a list less a step)
            for d in deps:
                dependents[d].append(sid)
        self.dependents: dict[str, tuple[str, ...]] = {}
        same: dict[tuple[str, ...], tuple[str, ...]] = {}  # steps with the same dependents share them (a fan's all)
        for d, after in dependents.items():
            self.dependents[d] = same.setdefault(tuple(after), tuple(after))
        self.open: Counter = Counter()  # phase -> steps not succeeded/skipped
        self.unfinished: Counter = Counter()  # phase -> steps pending, running or suspended
        self.total_weight = 0.0
        self.done_weight = 0.0
        self.undone_weight = 0.0  # of the steps a rollback undid
        for sid, spec in self.specs.items():
            self._count(sid, steps[sid]["state"], +1)
            if spec["phase"] in ("run", "finalize"):
                self.total_weight += spec["weight"]
        self.blocking: dict[str, int] = {}
        self.ready: list[tuple] = []
        self.timers: list[Timer] = []
        self.to_undo: set[str] = set()
        self.rerun: list[str] = []  # interrupted idempotent steps: they restart even while halting
        self.reattach: list[str] = []  # running steps whose calls agents hold: a new owner collects them
        self.halt = run["halt"]
        self._enter(run["stage"], now)

    # -- the two operations ---------------------------------------------------------------

    def apply(self, event: ev.Event, now: float) -> list[str]:
        """Take in what happened; returns the ids of the steps it reached (retried, signalled, interrupted...).

        A command that makes no sense in the run's state raises a WeftError
        saying why, before anything changed.
        """
        match event:  # the most frequent first
            case ev.Succeeded(step, attempt, outputs, undo):
                if undo:
                    return self._undone(step, attempt, now)
                if is_polling(self.steps[step]):
                    return self._polled(step, attempt, outputs, now)
                return self._succeeded(step, attempt, outputs, now)
            case ev.Failed(step, attempt, error, undo):
                if undo:
                    return self._undo_failed(step, attempt, error, now)
                rec = self.steps[step]
                if rec["state"] not in ACTIVE or rec["attempts"] != attempt:
                    return []
                if self.halt == Halt.CANCEL:  # its action was stopped by the cancel
                    self._set_step(
                        step, StepState.CANCELLED, now, "stopped by cancel", error=error, ended=now, due=None
                    )
                elif overdue(rec, now):  # the action saw its deadline (ctx.cancelled()) before the timer fired here
                    self._time_out(step, now)
                elif is_polling(rec) and self.specs[step]["kind"] != "each":  # an `each` step's look fails for good
                    self._poll_failed(step, error, now)
                else:
                    self._fail(step, error, now)
                return [step]
            case ev.Dispatched() | ev.Placed() | ev.Lost():
                return self._remote(event, now)
            case ev.Driven(pid, host):
                if self.run.get("driver") != {"pid": pid, "host": host}:
                    self.run["driver"] = {"pid": pid, "host": host}
                    self.run_dirty = True
                return []
            case ev.PollStarted() | ev.PollPending():
                return self._poll_answered(event, now)
            case ev.Woken(step):
                return self._wake(step, now)
            case ev.TaskCancelled():
                return self._task_cancelled(event, now)
            case ev.Progressed(step, attempt, fraction):
                if self.awaits(step, attempt):
                    self.fractions[step] = fraction
                return []
            case ev.Logged(step, line, at):  # a secret an action logs is never recorded
                line = mask(line, secret_values(self.run))
                self.events.append({"t": at, "step": step, "log": line})
                return []
            case ev.Recover():
                return self._recover(now)
            case ev.Resume(restart):
                return self._resume(restart, now)
            case ev.Skip(step, outputs):
                return self._skip(step, outputs, now)
            case ev.Cancel(by):
                return self._cancel(by, now)
            case ev.Rollback(force, retry, skip):
                return self._rollback(force, retry, skip, now)
            case ev.Signal(name, fields):
                return self._signal(name, fields, now)
            case ev.Rerun(steps, with_dependents, by):
                return self._rerun(steps, with_dependents, by, now)
        raise TypeError(f"not a machine event: {event!r}")

    def launches(self, now: float, slots: int) -> list[Launch]:
        """Work to start now (at most `slots` actions), recorded as started; fires due timers, advances the run."""
        run = self.run
        if run["state"] == _RUN_PENDING:
            self._set_run(RunState.RUNNING, now)
        if self.timers and self.timers[0].due <= now:
            self._tick(now)
        out: list[Launch] = []
        if self.halt != _CANCEL:
            while self.rerun and slots > len(out):
                launch = self._start(self.rerun.pop(0), now)
                if launch is not None:
                    out.append(launch)
        ready = self.ready
        while True:
            if run["state"] == _RUN_RUNNING and not self.halt:
                if run["stage"] == _IN_ROLLBACK:
                    out += self._launch_undos(now, slots - len(out))
                else:
                    while slots > len(out) and ready and not self.halt:
                        launch = self._start(heapq.heappop(ready)[2], now)
                        if launch is not None:
                            out.append(launch)
            stage = run["stage"], run["state"]
            self._advance(now)
            if stage == (run["stage"], run["state"]) or not ready:
                break
        if self.poll_due and self.halt != _CANCEL:  # due polls take the slots left, even while halting
            out += self._launch_polls(slots - len(out))
        return out

    # -- queries ----------------------------------------------------------------------------

    def awaits(self, step: str, attempt: int, undo: bool = False) -> bool:
        """Whether attempt `attempt` of `step` (its undo) is still awaited: a late answer to anything else is ignored."""
        if undo:
            return step in self.undoing and self.steps[step]["undo"]["attempt"] == attempt
        rec = self.steps[step]
        return rec["state"] in ACTIVE and rec["attempts"] == attempt

    def has_changes(self) -> bool:
        """Whether `changes()` has anything to persist."""
        return bool(self.events or self.dirty or self.run_dirty)

    def changes(self) -> tuple[RunRecord | None, list[tuple[str, StepRecord]], list[dict]]:
        """What changed since the last call: (run record or None, step records, events).

        The run record is in it only when it changed, not for every step's change: for its progress alone, once
        that moved by PROGRESS_STEP since the record was last in it (a chain's steps rewrite it every 100th).
        """
        progress = self.progress()
        if progress != self.run.get("progress"):
            self.run["progress"] = progress
            if abs(progress - self._saved_progress) >= PROGRESS_STEP:
                self.run_dirty = True
        run = self.run if self.run_dirty else None
        if run is not None:
            self._saved_progress = progress
        steps = [(sid, self.steps[sid]) for sid in sorted(self.dirty | self.unsaved, key=self.pos.__getitem__)]
        events, self.events = self.events, []
        self.dirty, self.unsaved = set(), set()
        self.run_dirty = False
        return run, steps, events

    def progress(self) -> float:
        """Weighted share of run and finalize steps done (running and polling ones by their reported fraction).

        In and after a rollback: the share of the steps to undo that are undone.
        """
        if self.run["stage"] == Stage.ROLLBACK or self.undone_weight:
            total = self.undone_weight + sum(self.specs[sid]["weight"] for sid in self.to_undo)
            return round(self.undone_weight / total, 4) if total else 1.0
        if not self.total_weight:
            return 1.0 if self.run["state"] == RunState.SUCCEEDED else 0.0
        done = self.done_weight
        for sid, f in self.fractions.items():
            if sid in self.running or sid in self.polling:
                done += self.specs[sid]["weight"] * f
        for sid in self.each_steps:  # a failed `each` step counts the items whose child run succeeded
            rec = self.steps[sid]
            if rec["state"] == StepState.FAILED:
                done += self.specs[sid]["weight"] * ((rec["error"] or {}).get("progress") or 0.0)
        return round(min(1.0, done / self.total_weight), 4)

    def note(self, now: float, detail: str, step: str | None = None) -> None:
        """A history event that changes no state (cancel requested, lease taken over...)."""
        event: dict[str, Any] = {"t": now, "note": detail}
        if step is not None:
            event["step"] = step
        self.events.append(event)

    # -- bookkeeping --------------------------------------------------------------------

    def _count(self, sid: str, state: str, sign: int) -> None:
        spec = self.specs[sid]
        phase = spec["phase"]
        if state not in DONE:
            self.open[phase] += sign
            if state in UNFINISHED:
                self.unfinished[phase] += sign
            elif state == _UNDONE and phase in _WEIGHED:
                self.undone_weight += sign * spec["weight"]
        elif phase in _WEIGHED:
            self.done_weight += sign * spec["weight"]

    def _set_step(self, sid: str, state: StepState, now: float, detail: str | None = None, **fields: Any) -> StepRecord:
        """Move a step to `state`, recording the event; returns the record."""
        rec = self.steps[sid]
        old = rec["state"]
        if old != state:
            self._count(sid, old, -1)
            self._count(sid, state, +1)
            rec["state"] = state
            if state == _RUNNING:
                self.running.add(sid)
            else:
                self.running.discard(sid)
                if state not in ACTIVE:
                    self.fractions.pop(sid, None)
        rec.update(fields)
        if is_polling(rec):
            self.polling.add(sid)
        elif self.polling:
            self.polling.discard(sid)
            self.polls_out.discard(sid)
        self.dirty.add(sid)
        if state == _RUNNING:
            event = {"t": now, "step": sid, "state": state, "attempt": rec["attempts"]}
        else:
            event = {"t": now, "step": sid, "state": state}
        if detail:
            event["detail"] = detail
        self.events.append(event)
        return rec

    def _set_run(self, state: RunState, now: float, detail: str | None = None, **fields: Any) -> None:
        run = self.run
        if state == RunState.RUNNING and run["started"] is None:
            run["started"] = now
        if state in RUN_ENDED:
            run["ended"] = now
            self._settle(state, now)
        run["state"] = state
        run.update(fields)
        self.run_dirty = True
        event = {"t": now, "state": state}
        if detail:
            event["detail"] = detail
        self.events.append(event)

    def _set_error(self, message: str | None) -> None:
        self.run["error"] = message
        self.run_dirty = True

    def _stop(self, why: Halt, now: float) -> None:
        """Start no new step: running ones finish, then the run pauses/fails/rolls back/cancels."""
        if _HALT_RANK[why] > _HALT_RANK[self.halt]:
            self.halt = self.run["halt"] = why
            self.run_dirty = True

    def _clear_halt(self) -> None:
        self.halt = self.run["halt"] = None
        self.run_dirty = True

    # -- stages --------------------------------------------------------------------------

    def _hook_phase(self) -> str:
        return "success" if self.run["ending"] == RunState.SUCCEEDED else "failure"

    def _stage_phase(self, stage: Stage) -> str | None:
        return {Stage.RUN: "run", Stage.FINALIZE: "finalize", Stage.HOOKS: self._hook_phase()}.get(stage)

    def _enter(self, stage: Stage, now: float) -> None:
        """Make `stage` current: count blockers, queue ready steps, arm timers."""
        if self.run["stage"] != stage:
            self.run["stage"] = stage
            self.run_dirty = True
        self.ready.clear()
        if stage == Stage.ROLLBACK:
            self._enter_rollback(now)
            return
        phase = self._stage_phase(stage)
        for sid, spec in self.specs.items():
            if spec["phase"] != phase:
                continue
            rec, deps = self.steps[sid], self.deps[sid]
            self.blocking[sid] = sum(self.steps[d]["state"] not in DONE for d in deps) if deps else 0
            if rec["state"] == _PENDING:
                self._queue(sid, now)
            else:
                self._arm(sid, TimerKind.DEADLINE, TimerKind.POLL)
        if stage == Stage.HOOKS:
            for sid in self.specs:
                if self.specs[sid]["phase"] == phase and self.steps[sid]["state"] == StepState.FAILED:
                    self._skip_dependents(sid, now)

    def _queue(self, sid: str, now: float) -> None:
        rec = self.steps[sid]
        if self.blocking[sid]:
            return
        if rec["due"] is not None and rec["due"] > now:
            self._arm(sid, TimerKind.RETRY)
            return
        self._push_ready(sid)

    def _push_ready(self, sid: str) -> None:
        heapq.heappush(self.ready, (-self.specs[sid]["remaining"], self.pos[sid], sid))

    def _release(self, sid: str, now: float) -> None:
        """`sid` succeeded or was skipped: unblock its dependents."""
        blocking = self.blocking
        for d in self.dependents.get(sid, ()):
            if d in blocking:
                blocking[d] -= 1
                if blocking[d] == 0 and self.steps[d]["state"] == _PENDING:
                    self._queue(d, now)

    def _skip_dependents(self, sid: str, now: float) -> None:
        for d in self.dependents.get(sid, ()):
            if self.steps[d]["state"] == StepState.PENDING:
                self._set_step(d, StepState.SKIPPED, now, f"dependency {sid} failed")
                self._skip_dependents(d, now)

    # -- outcomes -------------------------------------------------------------------------

    def _succeeded(self, sid: str, attempt: int, outputs: dict, now: float) -> list[str]:
        rec = self.steps[sid]
        if rec["state"] != _RUNNING or rec["attempts"] != attempt:
            return []  # a late answer for an attempt that timed out or was interrupted
        took = elapsed(rec, now)
        self._set_step(sid, _SUCCEEDED, now, took, outputs=outputs, ended=now)
        self._release(sid, now)
        return [sid]

    def _fail(self, sid: str, error: ErrorRecord, now: float, retry: bool = True) -> None:
        """Attempt of `sid` failed with `error`: retry it, or apply the step's error policy."""
        rec, spec = self.steps[sid], self.specs[sid]
        if retry and rec["retries_used"] < spec["retry"]:
            used = rec["retries_used"] + 1
            due = now + retry_delay(spec["backoff"], used)
            detail = f"retry {used} of {spec['retry']} in {due - now:g}s: {describe_error(error)}"
            self._set_step(sid, StepState.PENDING, now, detail, retries_used=used, error=error, due=due, ended=now)
            self._queue(sid, now)
            return
        self._set_step(sid, StepState.FAILED, now, describe_error(error), error=error, ended=now, due=None)
        if self.run["stage"] == Stage.HOOKS:
            self._skip_dependents(sid, now)
            return
        policy = spec["on_error"] or self.plan.get("on_error") or Halt.PAUSE
        if policy == "skip":
            self._set_step(sid, StepState.SKIPPED, now, "on error skip")
            self._release(sid, now)
        else:
            self._stop(policy, now)
        if policy != "skip" and self.run["error"] is None:
            self._set_error(step_failed(sid, error))

    # -- what to start --------------------------------------------------------------------

    def _start(self, sid: str, now: float) -> Launch | None:
        rec = self.steps[sid]
        if rec["state"] != _PENDING or self.blocking.get(sid) or (rec["due"] or 0) > now:
            return None
        spec = self.specs[sid]
        env = self.env
        try:
            if spec["when"] is not None and not expr.truthy(expr.evaluate(spec["when"], env)):
                self._set_step(sid, StepState.SKIPPED, now, "when is false", due=None)
                self._release(sid, now)
                return None
            inputs = {k: expr.evaluate(e, env) for k, e in spec["inputs"].items()}
            items = None
            if spec["kind"] == "each":
                items = expr.evaluate(spec["each"]["items"], env)
                if not isinstance(items, list):
                    raise expr.EvalError(f"each needs a list of items, not {expr.type_name(items)}")
            queue = _queue(spec, env)
            problem = check_serializable([inputs, items]) if inputs or items is not None else None
            if problem:
                raise expr.EvalError(f"inputs cannot be stored: {problem}")
        except expr.EvalError as e:
            rec["attempts"] += 1
            self._fail(sid, error_record("InputError", str(e)), now, retry=False)
            return None
        rec["attempts"] += 1
        deadline = None if spec["timeout"] is None else now + spec["timeout"]  # kept in the record: see waiting.py
        if spec["kind"] == "wait":
            self._set_step(
                sid,
                StepState.SUSPENDED,
                now,
                f"waiting for signal '{spec['wait']['signal']}'",
                inputs=inputs,
                started=now,
                deadline=deadline,
                due=None,
                error=None,
            )
            self._arm(sid, TimerKind.DEADLINE)
            return None
        rec.update(
            inputs=inputs if items is None else {"items": items, "with": inputs},
            started=now,
            ended=None,
            due=None,
            error=None,
            deadline=deadline,
            poll=None,
        )
        if queue is not None:
            rec["queue"] = queue  # kept by the steps that name a queue only
        self._set_step(sid, _RUNNING, now)
        if deadline is not None:
            self._arm(sid, _DEADLINE)
        return Launch(sid, rec["attempts"], spec["action"], inputs, deadline, items=items, queue=queue)

    def _advance(self, now: float) -> None:
        """Move the run on when a stage is complete or a halt has drained."""
        run = self.run
        while run["state"] == _RUN_RUNNING:
            stage = run["stage"]
            if stage == _RUN and not self.halt and self.open["run"]:
                return  # (the usual case: a run going on)
            if self.halt:
                if self.running or self.polling or self.undoing:
                    return
                if self.halt == Halt.CANCEL:
                    self._set_run(RunState.CANCELLED, now)
                elif stage in (Stage.HOOKS, Stage.ROLLBACK):
                    return
                elif self.halt == Halt.PAUSE:
                    self._set_run(RunState.PAUSED, now, run["error"])
                elif self.halt == Halt.FAIL:
                    self._end(RunState.FAILED, now)
                else:
                    self._clear_halt()
                    self._enter(Stage.ROLLBACK, now)
                continue
            if stage == _RUN:
                self._enter(_FINALIZE, now)
            elif stage == _FINALIZE and not self.open["finalize"]:
                self._succeed(now)
            elif stage == _HOOKS and not self.unfinished[self._hook_phase()]:
                ending = run["ending"]
                detail = "rolled back" if run["rolled_back"] else run["error"] if ending == RunState.FAILED else None
                self._set_run(RunState(ending), now, detail)
            elif stage == Stage.ROLLBACK and not self.undoing and not self.ready:
                self._rollback_done(now)
            else:
                return

    def _succeed(self, now: float) -> None:
        try:
            result = {k: expr.evaluate(e, self.env) for k, e in (self.plan.get("returns") or {}).items()}
        except expr.EvalError as e:
            self.run["error"] = f"cannot compute the result: {e}"
            self._end(RunState.FAILED, now)
            return
        self.run["result"] = result
        self._end(RunState.SUCCEEDED, now)

    def _end(self, outcome: RunState, now: float) -> None:
        """The run's outcome is decided: run its on success / on failure steps, then finish.

        A failed run never runs its on success steps: they are skipped. A
        succeeded run's on failure steps stay pending, for a rollback to run.
        """
        self.run["ending"] = outcome
        self._clear_halt()
        if outcome == RunState.FAILED:
            for sid, spec in self.specs.items():
                if spec["phase"] == "success" and self.steps[sid]["state"] == StepState.PENDING:
                    self._set_step(sid, StepState.SKIPPED, now, "the run failed")
        self._enter(Stage.HOOKS, now)


def _queue(spec: dict, env: expr.Env) -> str | None:
    """The executor queue of a step's call (None: the default queue); an EvalError if it cannot be computed."""
    if spec.get("queue") is None:  # a Plan compiled before steps had queues has no key
        return None
    try:
        queue = expr.evaluate(spec["queue"], env)
    except expr.EvalError as e:
        raise expr.EvalError(f"cannot compute the queue of step {spec['id']}: {e}") from None
    if not isinstance(queue, str) or not queue:
        shown = "an empty string" if queue == "" else expr.type_name(queue)
        raise expr.EvalError(f"the queue of step {spec['id']} must be a non-empty string, not {shown}")
    return queue


def _outputs(steps: dict[str, StepRecord], sid: str) -> dict:
    rec = steps.get(sid)
    if rec is None:
        raise expr.EvalError(f"no step '{sid}'")
    if rec["outputs"] is None:
        raise expr.Absent(f"step '{sid}' has no outputs (it is {rec['state']})")
    return rec["outputs"]
