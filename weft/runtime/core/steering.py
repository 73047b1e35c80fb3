"""What a person (or a new owner process) does to a run: the Machine's commands.

`Steering` holds the Machine's handling of the command events (Recover,
Resume, Skip, Cancel, Rollback, Rerun, Signal): each checks that the command makes
sense for the run's state and raises a WeftError saying why not *before*
changing anything; the caller persists `machine.changes()` afterwards.

The module-level functions are the same commands as plain calls with the
`(machine, now)` shape that `engine.session.take(store, run, fn)` applies,
plus read-only questions (find_step, failed_steps, waiting_for, without_undo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weft.errors import WeftError
from weft.runtime.core import events as ev
from weft.runtime.core.states import (
    UNFINISHED,
    Halt,
    RunState,
    Stage,
    StepState,
    error_record,
    redoable,
    step_failed,
)
from weft.runtime.core.timers import TimerKind
from weft.runtime.core.waiting import holds_task, overdue
from weft.suggest import suggest

if TYPE_CHECKING:
    from weft.runtime.core.machine import Machine

INTERRUPTED = "Interrupted"
REATTACH_GRACE = 10.0  # seconds a new owner has to collect a call past its deadline before it times out
RERUNNABLE = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})  # states a re-run starts from


class Steering:
    """The Machine's commands (a part of the Machine class: its state is the Machine's)."""

    def _recover(self, now: float) -> list[str]:
        """After the previous owner died: re-run what was running if idempotent, else fail it.

        A step whose call an agent may hold is collected: past its deadline, it has REATTACH_GRACE seconds for
        that before it times out (the agent may have finished it in time). A pure or idempotent step past its
        deadline fails with a Timeout (and its retries apply); a non-idempotent one is interrupted all the same:
        its process died, and it may have done its work. Suspended steps go on waiting (polling steps are
        polled again). Returns the ids of the steps marked failed ("interrupted") for a human.
        """
        interrupted = []
        for sid in sorted(self.running, key=self.pos.__getitem__):
            rec = self.steps[sid]
            if (rec.get("call") or {}).get("attempt") == rec["attempts"]:  # an agent may still run it
                self.reattach.append(sid)
                self.note(now, f"call {rec['call']['id']} in flight on agents: this owner collects it", sid)
                if overdue(rec, now):
                    rec["deadline"] = now + REATTACH_GRACE
                    self.dirty.add(sid)
                    self._arm(sid, TimerKind.DEADLINE)
            elif overdue(rec, now) and self._redoable(sid):
                self._time_out(sid, now)
            elif self._interrupt(sid, now, "interrupted"):
                interrupted.append(sid)
        for sid in sorted(self.undoing, key=self.pos.__getitem__):
            rec = self.steps[sid]
            if self.specs[sid]["kind"] == "each" or self.specs[sid]["undo"]["action"]["idempotent"]:
                self.undoing.discard(sid)
                rec["undo"] = {**rec["undo"], "state": None}
                self.dirty.add(sid)
                self.events.append({"t": now, "step": sid, "state": "undoing", "detail": "interrupted; runs again"})
            else:  # it may have done part of its work: a person says whether it runs again (Rollback retry/skip)
                self._record_undo_failure(sid, _interrupted(), now)
                interrupted.append(sid)
        if interrupted and self.run["stage"] in (Stage.RUN, Stage.FINALIZE):
            self._stop(Halt.PAUSE, now)
            self._set_error(f"step {interrupted[0]} was interrupted")
        self._enter(self.run["stage"], now)
        return interrupted

    def _redoable(self, sid: str) -> bool:
        """Whether step `sid` runs again after its process died: an `each` step finds its sub-runs again; a pure
        or idempotent action is harmless to call again."""
        return self.specs[sid]["kind"] == "each" or redoable(self.specs[sid]["action"])

    def _interrupt(self, sid: str, now: float, detail: str) -> bool:
        """Running step `sid` lost its process: re-run it if pure or idempotent, else fail it; True if it failed."""
        if self._redoable(sid):
            self._set_step(sid, StepState.PENDING, now, f"{detail}; runs again (idempotent)", due=None)
            self.rerun.append(sid)
            return False
        self._set_step(sid, StepState.FAILED, now, detail, ended=now, error=_interrupted(detail))
        return True

    def _remote(self, event: ev.Dispatched | ev.Placed | ev.Lost, now: float) -> list[str]:
        """A call of a step's attempt sent to an agent: recorded, taken by an agent, or lost with its agent."""
        rec = self.steps[event.step]
        if rec["state"] != StepState.RUNNING or rec["attempts"] != event.attempt:
            return []  # an attempt that ended meanwhile (timed out, cancelled)
        match event:
            case ev.Dispatched(step, attempt, call):
                rec["call"] = {"id": call, "attempt": attempt, "agent": None}
                self.dirty.add(step)
            case ev.Placed(step, _, call, agent):
                rec["call"] = {**rec["call"], "id": call, "agent": agent}
                self.dirty.add(step)
                self.note(now, f"running on agent {agent}", step)
            case ev.Lost(step, _, detail):  # re-run if redoable; else failed, and the step's error policy applies
                if self._redoable(step):
                    self._interrupt(step, now, detail)
                else:
                    self._fail(step, _interrupted(detail), now, retry=False)
        return [event.step]

    def _resume(self, restart: tuple[str, ...], now: float) -> list[str]:
        """Retry the failed steps of a paused run and go on; returns their ids.

        A failed polling step polls the external task it started again, unless
        it is in `restart`: then it starts over (its action's `start` again).
        """
        self._refuse_if_ended("resumed")
        for sid in restart:
            if self.steps[sid]["state"] != StepState.FAILED:
                raise WeftError(f"step {sid} is {self.steps[sid]['state']}, not failed; only a failed step restarts")
        retried = []
        if self.run["state"] == RunState.PAUSED:
            retried = self._retry_failed(restart, "resume", now)
            self._clear_halt()
            self._set_run(RunState.RUNNING, now, "resumed", error=None)
        self._enter(self.run["stage"], now)
        return retried

    def _retry_failed(self, restart: tuple[str, ...], by: str, now: float) -> list[str]:
        """Make the failed run and finalize steps go again (polling ones poll their task again, unless in `restart`)."""
        retried = []
        phases = ("run", "finalize") if self.run["stage"] in (Stage.RUN, Stage.FINALIZE) else ()
        for sid, spec in self.specs.items():
            rec = self.steps[sid]
            if spec["phase"] not in phases or rec["state"] != StepState.FAILED:
                continue
            cancelled = (rec.get("cancel") or {}).get("attempt") == rec["attempts"]  # its task was let go (a timeout)
            if rec.get("poll") is not None and spec["kind"] != "each" and sid not in restart and not cancelled:
                deadline = None if spec["timeout"] is None else now + spec["timeout"]
                detail = f"retried by {by}: polls the task it started again"
                self._set_step(sid, StepState.SUSPENDED, now, detail, retries_used=0, due=now, deadline=deadline)
            else:
                self._set_step(sid, StepState.PENDING, now, f"retried by {by}", retries_used=0, due=None)
            retried.append(sid)
        return retried

    def _rerun(self, steps: tuple[str, ...], with_dependents: bool, by: str | None, now: float) -> list[str]:
        """Run `steps` again (and, `with_dependents`, every step downstream of them) on a paused or ended run.

        The steps go back to pending and the run goes on as a resume would
        (its failed steps are retried too). A run that succeeded or failed
        runs again from there; its hooks that ran do not run again. Refused
        while the run runs, and for a step whose undo has run. Returns the
        steps made pending, in plan order.
        """
        run = self.run
        if run["state"] in (RunState.RUNNING, RunState.PENDING):
            raise WeftError(
                f"run {run['id']} is {run['state']}; a step re-runs once the run has paused or ended "
                f"(weft cancel {run['id']} stops it)"
            )
        if run["state"] in (RunState.SCHEDULED, RunState.CANCELLED) or run["rolled_back"]:
            self._refuse_if_ended("re-run")
        if run["stage"] == Stage.ROLLBACK:
            raise WeftError(f"run {run['id']} was being rolled back; weft rollback {run['id']} goes on with it")
        if not steps:
            raise WeftError(f"run {run['id']} has no step that ran; nothing to re-run")
        targets = self._rerun_targets(steps, with_dependents)
        ended = run["state"] in (RunState.SUCCEEDED, RunState.FAILED)
        asked = f", asked by {by}" if by else ""
        shown = ", ".join(steps[:5]) + (", ..." if len(steps) > 5 else "")
        self.note(now, f"re-run of {shown}" + (" and the steps downstream" if with_dependents else "") + asked)
        if ended:  # it goes on from where it ended: the on success hooks a failure skipped may run now
            run.update(ended=None, ending=None, result=None)
            for sid, spec in self.specs.items():
                if spec["phase"] == "success" and self.steps[sid]["state"] == StepState.SKIPPED:
                    self._set_step(sid, StepState.PENDING, now, "the run goes on again")
        again = []
        for sid in sorted(targets, key=self.pos.__getitem__):
            if self.steps[sid]["state"] in RERUNNABLE:
                self._set_step(sid, StepState.PENDING, now, f"re-run{asked}", retries_used=0, due=None, poll=None)
                again.append(sid)
        stage = run["stage"] if not ended else Stage.FINALIZE
        if any(self.specs[sid]["phase"] == "run" for sid in again) or stage not in (Stage.RUN, Stage.FINALIZE):
            stage = Stage.RUN
        run["stage"] = stage
        self._retry_failed((), "re-run", now)
        self._clear_halt()
        self._set_run(RunState.RUNNING, now, "re-run" + asked, error=None)
        self._enter(stage, now)
        return again

    def _rerun_targets(self, steps: tuple[str, ...], with_dependents: bool) -> set[str]:
        """`steps` and, `with_dependents`, what follows them (a run step: the finalize steps too); a WeftError
        naming the first that cannot run again."""
        for sid in steps:
            state = self.steps[sid]["state"]
            _refuse_undone(sid, self.steps[sid])
            if self.specs[sid]["phase"] not in ("run", "finalize"):
                raise WeftError(f"step {sid} is an on success / on failure hook; only run and finalize steps re-run")
            if state not in RERUNNABLE:
                what = "has not run yet" if state == StepState.PENDING else f"is {state}"
                raise WeftError(f"step {sid} {what}; only a step that succeeded, failed or was skipped re-runs")
        targets, todo = set(steps), list(steps)
        finalize = [sid for sid, spec in self.specs.items() if spec["phase"] == "finalize"]
        while with_dependents and todo:
            sid = todo.pop()
            after = self.dependents.get(sid, [])
            for d in [*after, *(finalize if self.specs[sid]["phase"] == "run" else ())]:
                if d not in targets:
                    targets.add(d)
                    todo.append(d)
        for sid in sorted(targets, key=self.pos.__getitem__):
            _refuse_undone(sid, self.steps[sid])
        return targets

    def _skip(self, sid: str, outputs: dict[str, Any] | None, now: float) -> list[str]:
        """Mark failed step `sid` skipped (with hand-given outputs) so its dependents go on."""
        self._refuse_if_ended("changed")
        rec = self.steps[sid]
        if rec["state"] != StepState.FAILED:
            raise WeftError(f"step {sid} is {rec['state']}, not failed; only a failed step can be skipped")
        self._set_step(sid, StepState.SKIPPED, now, "skipped by hand", outputs=outputs)
        self._release(sid, now)
        remaining = [
            s
            for s in self.specs
            if self.steps[s]["state"] == StepState.FAILED and self.specs[s]["phase"] in ("run", "finalize")
        ]
        self._clear_halt()
        for s in remaining:
            policy = self.specs[s]["on_error"] or self.plan.get("on_error") or Halt.PAUSE
            self._stop(Halt.PAUSE if self.steps[s]["error"]["type"] == INTERRUPTED else policy, now)
        if self.run["state"] == RunState.PAUSED and not remaining:
            self._set_run(RunState.RUNNING, now, f"continues after skipping {sid}", error=None)
        elif remaining and (self.run["error"] or "").startswith(step_failed(sid, None)):  # names one that fails
            self._set_error(step_failed(remaining[0], self.steps[remaining[0]]["error"]))
        self._enter(self.run["stage"], now)
        return [sid]

    def _cancel(self, by: str | None, now: float) -> list[str]:
        """Cancel every step that is not running; the run ends cancelled once running ones finish."""
        if by is not None:
            self.note(now, f"cancel requested by {by}")
        self._refuse_if_ended("cancelled")
        cancelled = []
        for sid in self.specs:
            state = self.steps[sid]["state"]
            if (state in UNFINISHED or state == StepState.FAILED) and sid not in self.running:
                if holds_task(self.steps[sid]):  # polling, or failed while it polled: its external task is cancelled
                    self._forsake(sid, now)
                self._set_step(sid, StepState.CANCELLED, now, "run cancelled", due=None)
                cancelled.append(sid)
        self._stop(Halt.CANCEL, now)
        if self.run["state"] != RunState.RUNNING:
            self._set_run(RunState.RUNNING if self.running else RunState.CANCELLED, now, "cancel requested")
        return cancelled

    def _rollback(self, force: bool, retry: tuple[str, ...], skip: tuple[str, ...], now: float) -> list[str]:
        """Undo every succeeded step in reverse dependency order; the run then ends failed.

        An undo that failed runs again; one that was interrupted while it ran
        only if named in `retry` (in `skip`: it counts as done). A rollback
        still going whose owner died goes on without them; any other is refused.
        """
        run = self.run
        if run["state"] == RunState.SCHEDULED:
            self._refuse_if_ended("rolled back")
        self._check_undo_choices(retry, skip)
        going = run["state"] == RunState.RUNNING and run["stage"] == Stage.ROLLBACK
        left = [sid for sid in interrupted_undos(self) if sid not in retry and sid not in skip]
        if left and not going:
            raise WeftError(interrupted_message(run["id"], left))
        if run["state"] == RunState.FAILED and run["rolled_back"]:
            raise WeftError(f"run {run['id']} was already rolled back")
        if run["state"] == RunState.RUNNING and self.running:
            raise WeftError(f"run {run['id']} has running steps; cancel it or wait for it to pause")
        if run["state"] == RunState.RUNNING and self.polling:
            raise WeftError(
                f"run {run['id']} has steps polling external tasks ({', '.join(sorted(self.polling)[:5])}); "
                "resume it to let them finish, or cancel it"
            )
        missing = without_undo(self.specs, {sid: rec["state"] for sid, rec in self.steps.items()})
        if missing and not force:
            raise WeftError(
                f"cannot roll back run {run['id']}: succeeded step{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} ha{'ve' if len(missing) > 1 else 's'} no undo "
                f"(--force rolls back the others and leaves {'them' if len(missing) > 1 else 'it'} as done)"
            )
        for sid in self.specs:
            undo = self.steps[sid]["undo"] or {}
            if sid in skip:
                self.steps[sid]["undo"] = {**undo, "state": StepState.SKIPPED}
                self._set_step(sid, StepState.UNDONE, now, "undo skipped by hand")
            elif undo.get("state") == StepState.FAILED and (sid in retry or not _was_interrupted(undo)):
                self.steps[sid]["undo"] = {**undo, "state": None}
                self.dirty.add(sid)
        self._clear_halt()
        run.update(ending=None, rolled_back=False, forced=force)  # `forced`: the child runs of `each` steps too
        self._set_run(RunState.RUNNING, now, "rollback" + (f" (without undo: {', '.join(missing)})" if missing else ""))
        self._enter(Stage.ROLLBACK, now)
        return sorted(self.to_undo, key=self.pos.__getitem__)

    def _signal(self, name: str, fields: dict[str, Any], now: float) -> list[str]:
        """Deliver signal `name`: every step waiting for it succeeds with `fields` as outputs."""
        self._refuse_if_ended("signalled")
        targets = waiting_for(self, name)
        if not targets:
            raise WeftError(_not_waiting(self, name))
        for sid in targets:
            self._set_step(
                sid, StepState.SUCCEEDED, now, f"signal '{name}'", outputs=dict(fields), ended=now, deadline=None
            )
            self._release(sid, now)
        return targets

    def _check_undo_choices(self, retry: tuple[str, ...], skip: tuple[str, ...]) -> None:
        """A WeftError unless every step named to retry or skip its undo has an undo that failed."""
        for sid in (*retry, *skip):
            state = (self.steps[sid]["undo"] or {}).get("state")
            if state != StepState.FAILED:
                what = "has not been undone yet" if state is None else f"has an undo that {state}"
                raise WeftError(f"step {sid} {what}; only a failed or interrupted undo can be retried or skipped")
            if sid in retry and sid in skip:
                raise WeftError(f"step {sid} is named to both retry and skip its undo; choose one")

    def _refuse_if_ended(self, done: str) -> None:
        """A WeftError saying why a run that has ended, or not started yet, cannot be `done` (resumed, changed...)."""
        run = self.run
        state = run["state"]
        if state == RunState.SCHEDULED and done != "cancelled":
            raise WeftError(
                f"run {run['id']} is scheduled and has not started; it cannot be {done} (weft cancel stops it)"
            )
        if state == RunState.SUCCEEDED:
            raise WeftError(f"run {run['id']} already succeeded; it cannot be {done}")
        if state == RunState.CANCELLED:
            raise WeftError(f"run {run['id']} was cancelled; it cannot be {done}")
        if state == RunState.FAILED:
            if run["rolled_back"]:
                raise WeftError(f"run {run['id']} was rolled back; it cannot be {done}")
            raise WeftError(f"run {run['id']} failed; it cannot be {done} (weft rollback {run['id']} undoes its steps)")


def _refuse_undone(sid: str, rec: dict) -> None:
    """A WeftError if a rollback ran the undo of step `sid` (a re-run would redo what was taken back)."""
    undo = rec["undo"]
    if undo is not None:
        raise WeftError(
            f"step {sid} was rolled back (its undo {undo.get('state') or 'ran'}); a step whose undo has run cannot be re-run"
        )


def _interrupted(detail: str = "interrupted") -> dict:
    why = "the process running it stopped" if detail == "interrupted" else detail
    return error_record(INTERRUPTED, f"interrupted: {why}")


def _was_interrupted(undo: dict) -> bool:
    return (undo.get("error") or {}).get("type") == INTERRUPTED


def interrupted_undos(m: Machine) -> list[str]:
    """Steps whose undo was interrupted while it ran and waits for a person (retry or skip), in plan order."""
    return [
        sid
        for sid in m.specs
        if (m.steps[sid]["undo"] or {}).get("state") == StepState.FAILED and _was_interrupted(m.steps[sid]["undo"])
    ]


def interrupted_message(run_id: str, steps: list[str]) -> str:
    """What to do about interrupted undos: check them, then retry or skip each."""
    first = steps[0]
    which = f"step {first}" if len(steps) == 1 else f"steps {', '.join(steps)}"
    return (
        f"the undo of {which} of run {run_id} was interrupted while it ran and may have done part of its work; "
        f"check, then `weft rollback {run_id} --retry-undo {first}` runs it again "
        f"or `--skip-undo {first}` counts it as done"
    )


# -- the commands as plain calls ------------------------------------------------------------


def recover(m: Machine, now: float) -> list[str]:
    """After the previous owner died; returns the steps marked interrupted for a person."""
    return m.apply(ev.Recover(), now)


def resume(m: Machine, now: float, restart: tuple[str, ...] = ()) -> list[str]:
    """Retry the failed steps of a paused run (polling ones poll again, unless in `restart`); returns their ids."""
    return m.apply(ev.Resume(tuple(restart)), now)


def skip(m: Machine, sid: str, outputs: dict[str, Any] | None, now: float) -> None:
    """Mark failed step `sid` skipped (with hand-given outputs) so its dependents go on."""
    m.apply(ev.Skip(sid, outputs), now)


def cancel(m: Machine, now: float) -> None:
    """Cancel every step that is not running; the run ends cancelled once running ones finish."""
    m.apply(ev.Cancel(), now)


def rollback(m: Machine, now: float, force: bool, retry: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """Undo every succeeded step in reverse dependency order (interrupted undos: `retry` or `skip` them)."""
    m.apply(ev.Rollback(force, tuple(retry), tuple(skip)), now)


def rerun(m: Machine, steps: tuple[str, ...], with_dependents: bool, by: str | None, now: float) -> list[str]:
    """Run `steps` again (and what follows them, `with_dependents`) on a paused or ended run; the steps made pending."""
    return m.apply(ev.Rerun(tuple(steps), with_dependents, by), now)


def signal(m: Machine, name: str, fields: dict[str, Any], now: float) -> list[str]:
    """Deliver signal `name`; returns the steps it reached."""
    return m.apply(ev.Signal(name, fields), now)


# -- questions ------------------------------------------------------------------------------


def find_step(m: Machine, name: str) -> str:
    """The id of step `name`; a WeftError with a suggestion when there is none."""
    if name in m.specs:
        return name
    named = {s["name"]: sid for sid, s in m.specs.items() if s.get("name")}
    if name in named:
        return named[name]
    close = suggest(list(m.specs), name)
    hint = f" (did you mean '{close}'?)" if close else f" (steps: {', '.join(list(m.specs)[:12])})"
    raise WeftError(f"run {m.run['id']} has no step '{name}'{hint}")


def without_undo(specs: dict[str, dict], states: dict[str, str]) -> list[str]:
    """Succeeded steps that a rollback cannot undo, of a run's step `specs` and their `states` by step id."""
    return [
        sid
        for sid, spec in specs.items()
        if spec["phase"] in ("run", "finalize")
        and states[sid] == StepState.SUCCEEDED
        and not spec["undo"]
        and not (spec["action"] or {}).get("pure")
        and spec["kind"] != "each"  # its rollback rolls its child runs back
    ]


def waiting_for(m: Machine, name: str) -> list[str]:
    """Steps suspended on signal `name`."""
    return [
        sid
        for sid, spec in m.specs.items()
        if spec["kind"] == "wait" and spec["wait"]["signal"] == name and m.steps[sid]["state"] == StepState.SUSPENDED
    ]


def failed_steps(m: Machine) -> list[str]:
    """Ids of the failed steps, in plan order."""
    return [sid for sid in m.specs if m.steps[sid]["state"] == StepState.FAILED]


def _not_waiting(m: Machine, name: str) -> str:
    """Why signal `name` reaches no step of the run."""
    declared = [sid for sid, spec in m.specs.items() if spec["kind"] == "wait" and spec["wait"]["signal"] == name]
    if declared:
        states = ", ".join(f"step {sid} is {m.steps[sid]['state']}" for sid in declared)
        return f"run {m.run['id']} has no step waiting for signal '{name}' now ({states})"
    signals = sorted(
        {
            m.specs[s]["wait"]["signal"]
            for s in m.specs
            if m.specs[s]["kind"] == "wait" and m.steps[s]["state"] == StepState.SUSPENDED
        }
    )
    also = f" (it waits for: {', '.join(signals)})" if signals else ""
    return f"run {m.run['id']} has no step waiting for signal '{name}'{also}"
