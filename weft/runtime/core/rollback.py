"""Rolling a run back: the undo of every succeeded step, in reverse dependency order.

`Rollback` (steering.py) enters the "rollback" stage; from then on the
Machine's launches are undo actions: a step's undo starts once every step
that depended on it is undone (run-phase steps also wait for every finalize
step), concurrently where independent. An `each` step's undo rolls its child
runs back. The run then ends failed: rolled back, or with the first undo that
failed named in its error.

`Undoing` holds these operations of the Machine (machine.py joins it into the
Machine class).
"""

from __future__ import annotations

import heapq

from weft.plan import expr
from weft.plan.schema import ErrorRecord
from weft.runtime.core.events import Launch
from weft.runtime.core.states import RunState, StepState, describe_error, elapsed, error_record, step_failed
from weft.runtime.core.steering import failed_steps, interrupted_message, interrupted_undos
from weft.runtime.core.waiting import holds_task


class Undoing:
    """The Machine's rollback (a part of the Machine class: its state is the Machine's)."""

    def _enter_rollback(self, now: float) -> None:
        for sid, spec in self.specs.items():
            if spec["phase"] not in ("run", "finalize"):
                continue
            if holds_task(self.steps[sid]):  # a polling step that failed (or still waits): its task is cancelled
                self._forsake(sid, now)
            if self.steps[sid]["state"] in (StepState.PENDING, StepState.SUSPENDED):
                self._set_step(sid, StepState.CANCELLED, now, "rolled back before it started")
        self.to_undo = {
            sid
            for sid, spec in self.specs.items()
            if spec["phase"] in ("run", "finalize") and undoable(spec, self.steps[sid]["state"])
        }
        finalize = [sid for sid in self.to_undo if self.specs[sid]["phase"] == "finalize"]
        for sid in self.to_undo:
            after = [d for d in self.dependents.get(sid, ()) if d in self.to_undo]
            if self.specs[sid]["phase"] == "run":
                after += finalize
            self.blocking[sid] = len(set(after))
            if not self.blocking[sid] and sid not in self.undoing and self._undo_state(sid) != StepState.FAILED:
                # (a failed undo runs again only when a person rolls back again: steering._rollback)
                heapq.heappush(self.ready, (-self.specs[sid]["level"], self.pos[sid], sid))

    def _undo_state(self, sid: str) -> str | None:
        return (self.steps[sid]["undo"] or {}).get("state")

    def _launch_undos(self, now: float, slots: int) -> list[Launch]:
        out = []
        while slots > len(out) and self.ready:
            _, _, sid = heapq.heappop(self.ready)
            rec, spec = self.steps[sid], self.specs[sid]
            attempt = (rec["undo"] or {}).get("attempt", 0) + 1
            try:
                inputs = {k: expr.evaluate(e, self.env) for k, e in (spec["undo"] or {}).get("inputs", {}).items()}
            except expr.EvalError as e:
                self._record_undo_failure(sid, error_record("InputError", str(e)), now)
                continue
            rec["undo"] = {"state": StepState.RUNNING, "attempt": attempt, "started": now, "ended": None, "error": None}
            self.undoing.add(sid)
            self.dirty.add(sid)
            self.events.append({"t": now, "step": sid, "state": "undoing", "attempt": attempt})
            action = spec["undo"]["action"] if spec["undo"] else None  # an `each` step rolls its child runs back
            out.append(Launch(sid, attempt, action, inputs, None, undo=True, queue=rec.get("queue")))  # where it ran
        return out

    def _undone(self, sid: str, attempt: int, now: float) -> list[str]:
        if not self.awaits(sid, attempt, undo=True):
            return []
        rec = self.steps[sid]
        self.undoing.discard(sid)
        rec["undo"].update(state=StepState.SUCCEEDED, ended=now)
        self._set_step(sid, StepState.UNDONE, now, elapsed(rec["undo"], now))
        self.to_undo.discard(sid)
        waited = self.deps[sid] + (self._run_phase_undos() if self.specs[sid]["phase"] == "finalize" else [])
        for d in waited:
            if d in self.to_undo:
                self.blocking[d] -= 1
                if not self.blocking[d]:
                    heapq.heappush(self.ready, (-self.specs[d]["level"], self.pos[d], d))
        return [sid]

    def _undo_failed(self, sid: str, attempt: int, error: ErrorRecord, now: float) -> list[str]:
        if not self.awaits(sid, attempt, undo=True):
            return []
        self._record_undo_failure(sid, error, now)
        return [sid]

    def _record_undo_failure(self, sid: str, error: ErrorRecord, now: float) -> None:
        self.undoing.discard(sid)
        rec = self.steps[sid]
        before = rec["undo"] or {"attempt": 0, "started": now}
        rec["undo"] = {**before, "state": StepState.FAILED, "ended": now, "error": error}
        self.dirty.add(sid)
        self.events.append({"t": now, "step": sid, "state": "undo failed", "detail": describe_error(error)})

    def _run_phase_undos(self) -> list[str]:
        """The run-phase steps still to undo: each waits for every finalize step's undo."""
        return [sid for sid in self.to_undo if self.specs[sid]["phase"] == "run"]

    def _rollback_done(self, now: float) -> None:
        failed = sorted(sid for sid in self.to_undo if self._undo_state(sid) == StepState.FAILED)
        interrupted = [sid for sid in interrupted_undos(self) if sid in self.to_undo]
        if interrupted:
            self.run["error"] = f"rollback incomplete: {interrupted_message(self.run['id'], interrupted)}"
        elif failed:
            first = self.steps[failed[0]]["undo"]["error"]
            self.run["error"] = f"rollback incomplete: undo of {failed[0]} failed: {describe_error(first)}"
        else:
            self.run["rolled_back"] = True
            if (self.run["error"] or "").startswith("rollback incomplete: "):  # of an earlier try, finished now
                failed_now = failed_steps(self)
                self.run["error"] = (
                    step_failed(failed_now[0], self.steps[failed_now[0]]["error"]) if failed_now else None
                )
        self._end(RunState.FAILED, now)


def undoable(spec: dict, state: str) -> bool:
    """Whether a rollback undoes a step in `state`: a succeeded one with an undo; an `each` step that made
    child runs (succeeded, or failed with children paused or done) rolls them back."""
    if spec["kind"] == "each":
        return state in (StepState.SUCCEEDED, StepState.FAILED)
    return bool(spec["undo"]) and state == StepState.SUCCEEDED
