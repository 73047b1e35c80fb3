"""The orchestrator's pure core: which steps start, and what every outcome changes.

A Machine holds one run's Plan and records. It is told what happened
(`succeeded`, `failed`, `tick` for timers, the steering commands in
`steering.py`) and answers with `launch`: the steps to start now, already
recorded as running. Every change lands in `changes()` (dirty records plus
history events) for the caller to persist *before* acting on the launches.
No threads, no store, no clock: `now` is always passed in.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any

from weft.plan import expr
from weft.runtime.core import waiting
from weft.runtime.records import check_serializable
from weft.runtime.core.states import DONE, RUN_ENDED, UNFINISHED, describe_error, error_record

_HALT_RANK = {None: 0, "pause": 1, "fail": 2, "rollback": 3, "cancel": 4}


@dataclass(slots=True)
class Launch:
    """Start `action` with `inputs` for attempt `attempt` of `step` (its undo when `undo`)."""

    step: str
    attempt: int
    action: dict | None
    inputs: dict
    deadline: float | None
    undo: bool = False
    items: list | None = None  # an `each` step's items: one sub-run each
    poll: dict | None = None  # a suspended polling step's poll record: poll its handle once


class Machine:
    """One run's orchestration state; every public method takes the current time `now`."""

    def __init__(self, plan: dict, run: dict, steps: dict[str, dict], now: float) -> None:
        self.plan = plan
        self.run = run
        self.steps = steps
        self.specs = {s["id"]: s for s in plan["steps"]}
        self.pos = {sid: i for i, sid in enumerate(self.specs)}
        self.events: list[dict] = []
        self.dirty: set[str] = set()
        self.unsaved: set[str] = set()  # changed, needing no commit of its own (a poll's Pending): rides along
        self.run_dirty = False
        self.running: set[str] = {sid for sid, r in steps.items() if r["state"] == "running"}
        self.undoing: set[str] = {sid for sid, r in steps.items() if (r["undo"] or {}).get("state") == "running"}
        self.polling: set[str] = {sid for sid, r in steps.items() if waiting.is_polling(r)}
        self.poll_due: dict[str, None] = {}  # polling steps whose poll is due, in order
        self.env = expr.Env(run["inputs"], partial(_outputs, steps))  # no cycle back to the machine
        self.deps: dict[str, list[str]] = {}
        self.dependents: dict[str, list[str]] = defaultdict(list)
        finalize_prev = None
        for sid, spec in self.specs.items():
            phase = spec["phase"]
            deps = [d for d in spec["deps"] if d in self.specs and self.specs[d]["phase"] == phase]
            if phase == "finalize":
                if finalize_prev is not None and finalize_prev not in deps:
                    deps.append(finalize_prev)
                finalize_prev = sid
            self.deps[sid] = deps
            for d in deps:
                self.dependents[d].append(sid)
        self.open: Counter = Counter()  # phase -> steps not succeeded/skipped
        self.unfinished: Counter = Counter()  # phase -> steps pending, running or suspended
        self.total_weight = 0.0
        self.done_weight = 0.0
        for sid, spec in self.specs.items():
            self._count(sid, steps[sid]["state"], +1)
            if spec["phase"] in ("run", "finalize"):
                self.total_weight += spec["weight"]
        self.blocking: dict[str, int] = {}
        self.ready: list[tuple] = []
        self.timers: list[tuple] = []
        self.to_undo: set[str] = set()
        self.rerun: list[str] = []  # interrupted idempotent steps: they restart even while halting
        self.halt = run["halt"]
        self.enter(run["stage"], now)

    # -- bookkeeping --------------------------------------------------------------------

    def _count(self, sid: str, state: str, sign: int) -> None:
        spec = self.specs[sid]
        phase = spec["phase"]
        if state not in DONE:
            self.open[phase] += sign
        elif phase in ("run", "finalize"):
            self.done_weight += sign * spec["weight"]
        if state in UNFINISHED:
            self.unfinished[phase] += sign

    def set_step(self, sid: str, state: str, now: float, detail: str | None = None, **fields: Any) -> dict:
        """Move a step to `state`, recording the event; returns the record."""
        rec = self.steps[sid]
        old = rec["state"]
        if old != state:
            self._count(sid, old, -1)
            self._count(sid, state, +1)
            rec["state"] = state
            (self.running.add if state == "running" else self.running.discard)(sid)
        rec.update(fields)
        (self.polling.add if waiting.is_polling(rec) else self.polling.discard)(sid)
        self.dirty.add(sid)
        event = {"t": now, "step": sid, "state": state}
        if state == "running":
            event["attempt"] = rec["attempts"]
        if detail:
            event["detail"] = detail
        self.events.append(event)
        return rec

    def set_run(self, state: str, now: float, detail: str | None = None, **fields: Any) -> None:
        run = self.run
        if state == "running" and run["started"] is None:
            run["started"] = now
        if state in RUN_ENDED:
            run["ended"] = now
            waiting.settle(self, state, now)
        run["state"] = state
        run.update(fields)
        self.run_dirty = True
        event = {"t": now, "state": state}
        if detail:
            event["detail"] = detail
        self.events.append(event)

    def note(self, now: float, detail: str, step: str | None = None) -> None:
        """A history event that changes no state (cancel requested, lease taken over...)."""
        event: dict[str, Any] = {"t": now, "note": detail}
        if step is not None:
            event["step"] = step
        self.events.append(event)

    def changes(self, fractions: dict[str, float] | None = None) -> tuple[dict | None, list, list[dict]]:
        """What changed since the last call: (run record or None, step records, events)."""
        self.run["progress"] = self.progress(fractions)
        run = self.run if (self.run_dirty or self.dirty) else None
        steps = [(sid, self.steps[sid]) for sid in sorted(self.dirty | self.unsaved, key=self.pos.__getitem__)]
        events, self.events = self.events, []
        self.dirty, self.unsaved = set(), set()
        self.run_dirty = False
        return run, steps, events

    def progress(self, fractions: dict[str, float] | None = None) -> float:
        """Weighted share of run and finalize steps done (running ones by their reported fraction)."""
        if not self.total_weight:
            return 1.0 if self.run["state"] == "succeeded" else 0.0
        done = self.done_weight
        for sid, f in (fractions or {}).items():
            if sid in self.running or sid in self.polling:
                done += self.specs[sid]["weight"] * f
        return round(min(1.0, done / self.total_weight), 4)

    # -- stages --------------------------------------------------------------------------

    def hook_phase(self) -> str:
        return "success" if self.run["ending"] == "succeeded" else "failure"

    def _stage_phase(self, stage: str) -> str | None:
        return {"run": "run", "finalize": "finalize", "hooks": self.hook_phase()}.get(stage)

    def enter(self, stage: str, now: float) -> None:
        """Make `stage` current: count blockers, queue ready steps, arm timers."""
        if self.run["stage"] != stage:
            self.run["stage"] = stage
            self.run_dirty = True
        self.ready.clear()
        if stage == "rollback":
            self._enter_rollback(now)
            return
        phase = self._stage_phase(stage)
        for sid, spec in self.specs.items():
            if spec["phase"] != phase:
                continue
            rec = self.steps[sid]
            self.blocking[sid] = sum(self.steps[d]["state"] not in DONE for d in self.deps[sid])
            if rec["state"] == "pending":
                self._queue(sid, now)
            else:
                waiting.arm(self, sid, now)
        if stage == "hooks":
            for sid in self.specs:
                if self.specs[sid]["phase"] == phase and self.steps[sid]["state"] == "failed":
                    self._skip_dependents(sid, now)

    def _queue(self, sid: str, now: float) -> None:
        rec = self.steps[sid]
        if self.blocking[sid]:
            return
        if rec["due"] is not None and rec["due"] > now:
            heapq.heappush(self.timers, (rec["due"], "due", sid, rec["attempts"]))
            return
        self._push_ready(sid)

    def _push_ready(self, sid: str) -> None:
        heapq.heappush(self.ready, (-self.specs[sid]["remaining"], self.pos[sid], sid))

    def release(self, sid: str, now: float) -> None:
        """`sid` succeeded or was skipped: unblock its dependents."""
        for d in self.dependents.get(sid, ()):
            if d in self.blocking:
                self.blocking[d] -= 1
                if self.blocking[d] == 0 and self.steps[d]["state"] == "pending":
                    self._queue(d, now)

    def _skip_dependents(self, sid: str, now: float) -> None:
        for d in self.dependents.get(sid, ()):
            if self.steps[d]["state"] == "pending":
                self.set_step(d, "skipped", now, f"dependency {sid} failed")
                self._skip_dependents(d, now)

    # -- what happened -------------------------------------------------------------------

    def succeeded(self, sid: str, attempt: int, outputs: dict, now: float) -> None:
        """The action of `sid` (attempt `attempt`) returned `outputs`."""
        rec = self.steps[sid]
        if rec["state"] != "running" or rec["attempts"] != attempt:
            return  # a late answer for an attempt that timed out or was interrupted
        took = _took(rec, now)
        self.set_step(sid, "succeeded", now, took, outputs=outputs, ended=now)
        self.release(sid, now)

    def failed(self, sid: str, attempt: int, error: dict, now: float, retry: bool = True) -> None:
        """The action of `sid` raised `error`; retry or apply the step's error policy."""
        rec = self.steps[sid]
        if rec["state"] in ("running", "suspended") and rec["attempts"] == attempt:
            self._fail(sid, error, now, retry)

    def _fail(self, sid: str, error: dict, now: float, retry: bool = True) -> None:
        rec, spec = self.steps[sid], self.specs[sid]
        if retry and rec["retries_used"] < spec["retry"]:
            used = rec["retries_used"] + 1
            due = now + spec["backoff"] * 2 ** (used - 1)
            detail = f"retry {used} of {spec['retry']} in {due - now:g}s: {describe_error(error)}"
            self.set_step(sid, "pending", now, detail, retries_used=used, error=error, due=due, ended=now)
            self._queue(sid, now)
            return
        self.set_step(sid, "failed", now, describe_error(error), error=error, ended=now, due=None)
        if self.run["stage"] == "hooks":
            self._skip_dependents(sid, now)
            return
        policy = spec["on_error"] or self.plan.get("on_error") or "pause"
        if policy == "skip":
            self.set_step(sid, "skipped", now, "on error skip")
            self.release(sid, now)
        else:
            self.stop(policy, now)
        if policy != "skip" and self.run["error"] is None:
            self.run["error"] = f"step {sid} failed: {describe_error(error)}"
            self.run_dirty = True

    def stop(self, why: str, now: float) -> None:
        """Start no new step: running ones finish, then the run pauses/fails/rolls back/cancels."""
        if _HALT_RANK[why] > _HALT_RANK[self.halt]:
            self.halt = self.run["halt"] = why
            self.run_dirty = True

    def tick(self, now: float) -> None:
        """Fire the timers that are due: retries, polls, deadlines (waiting.py)."""
        while self.timers and self.timers[0][0] <= now:
            _, kind, sid, attempt = heapq.heappop(self.timers)
            rec = self.steps[sid]
            if rec["attempts"] != attempt:
                continue
            if kind == "due":
                if rec["state"] == "pending" and rec["due"] is not None:
                    self._push_ready(sid)
            else:
                waiting.fire(self, kind, sid, attempt, now)

    def next_timer(self) -> float | None:
        return self.timers[0][0] if self.timers else None

    def waiting_only(self, polls: bool = False) -> bool:
        """Nothing runs, is ready or awaits a retry: the run waits for signals alone
        (or, with `polls`, for signals and the next polls of its polling steps)."""
        if self.run["state"] != "running" or self.running or self.undoing or self.ready:
            return False
        if self.polling and not polls:
            return False
        return not any(
            kind == "due" and self.steps[sid]["state"] == "pending" and self.steps[sid]["attempts"] == attempt
            for _, kind, sid, attempt in self.timers
        )

    # -- what to start --------------------------------------------------------------------

    def launch(self, now: float, slots: int) -> list[Launch]:
        """Steps to start now (at most `slots` actions), recorded as running; advances the run."""
        if self.run["state"] == "pending":
            self.set_run("running", now)
        self.tick(now)
        out: list[Launch] = []
        if self.halt != "cancel":
            while self.rerun and slots > len(out):
                launch = self._start(self.rerun.pop(0), now)
                if launch is not None:
                    out.append(launch)
        while True:
            if self.run["state"] == "running" and not self.halt:
                if self.run["stage"] == "rollback":
                    out += self._launch_undos(now, slots - len(out))
                else:
                    while slots > len(out) and self.ready and not self.halt:
                        launch = self._start(heapq.heappop(self.ready)[2], now)
                        if launch is not None:
                            out.append(launch)
            stage = self.run["stage"], self.run["state"]
            self._advance(now)
            if stage == (self.run["stage"], self.run["state"]) or not self.ready:
                break
        if self.halt != "cancel":  # due polls take the slots left, even while halting (like running steps)
            out += [
                Launch(
                    sid,
                    self.steps[sid]["attempts"],
                    self.specs[sid]["action"],
                    {},
                    self.steps[sid]["deadline"],
                    poll=self.steps[sid]["poll"],
                )
                for sid in waiting.take_due_polls(self, slots - len(out))
            ]
        return out

    def _start(self, sid: str, now: float) -> Launch | None:
        rec = self.steps[sid]
        if rec["state"] != "pending" or self.blocking.get(sid) or (rec["due"] or 0) > now:
            return None
        spec = self.specs[sid]
        try:
            if spec["when"] is not None and not expr.truthy(expr.evaluate(spec["when"], self.env)):
                self.set_step(sid, "skipped", now, "when is false", due=None)
                self.release(sid, now)
                return None
            inputs = {k: expr.evaluate(e, self.env) for k, e in spec["inputs"].items()}
            items = expr.evaluate(spec["each"]["items"], self.env) if spec["kind"] == "each" else None
            if spec["kind"] == "each" and not isinstance(items, list):
                raise expr.EvalError(f"each needs a list of items, not {expr.type_name(items)}")
            problem = check_serializable([inputs, items])
            if problem:
                raise expr.EvalError(f"inputs cannot be stored: {problem}")
        except expr.EvalError as e:
            rec["attempts"] += 1
            self._fail(sid, error_record("InputError", str(e)), now, retry=False)
            return None
        rec["attempts"] += 1
        deadline = None if spec["timeout"] is None else now + spec["timeout"]  # kept in the record: see waiting.py
        if deadline is not None:
            heapq.heappush(self.timers, (deadline, "deadline", sid, rec["attempts"]))
        if spec["kind"] == "wait":
            self.set_step(
                sid,
                "suspended",
                now,
                f"waiting for signal '{spec['wait']['signal']}'",
                inputs=inputs,
                started=now,
                deadline=deadline,
                due=None,
                error=None,
            )
            return None
        recorded = inputs if items is None else {"items": items, "with": inputs}
        self.set_step(
            sid,
            "running",
            now,
            inputs=recorded,
            started=now,
            ended=None,
            due=None,
            error=None,
            deadline=deadline,
            poll=None,
        )
        return Launch(sid, rec["attempts"], spec["action"], inputs, deadline, items=items)

    def _advance(self, now: float) -> None:
        """Move the run on when a stage is complete or a halt has drained."""
        run = self.run
        while run["state"] == "running":
            stage = run["stage"]
            if self.halt:
                if self.running or self.polling or self.undoing:
                    return
                if self.halt == "cancel":
                    self.set_run("cancelled", now)
                elif stage in ("hooks", "rollback"):
                    return
                elif self.halt == "pause":
                    self.set_run("paused", now, run["error"])
                elif self.halt == "fail":
                    self._end("failed", now)
                else:
                    self.halt = run["halt"] = None
                    self.enter("rollback", now)
                continue
            if stage == "run" and not self.open["run"]:
                self.enter("finalize", now)
            elif stage == "finalize" and not self.open["finalize"]:
                self._succeed(now)
            elif stage == "hooks" and not self.unfinished[self.hook_phase()]:
                detail = "rolled back" if run["rolled_back"] else run["error"] if run["ending"] == "failed" else None
                self.set_run(run["ending"], now, detail)
            elif stage == "rollback" and not self.undoing and not self.ready:
                self._rollback_done(now)
            else:
                return

    def _succeed(self, now: float) -> None:
        try:
            result = {k: expr.evaluate(e, self.env) for k, e in (self.plan.get("returns") or {}).items()}
        except expr.EvalError as e:
            self.run["error"] = f"cannot compute the result: {e}"
            self._end("failed", now)
            return
        self.run["result"] = result
        self._end("succeeded", now)

    def _end(self, outcome: str, now: float) -> None:
        """The run's outcome is decided: run its on success / on failure steps, then finish.

        A failed run never runs its on success steps: they are skipped. A
        succeeded run's on failure steps stay pending, for a rollback to run.
        """
        self.run["ending"] = outcome
        self.halt = self.run["halt"] = None
        self.run_dirty = True
        if outcome == "failed":
            for sid, spec in self.specs.items():
                if spec["phase"] == "success" and self.steps[sid]["state"] == "pending":
                    self.set_step(sid, "skipped", now, "the run failed")
        self.enter("hooks", now)

    # -- rollback -----------------------------------------------------------------------------

    def _enter_rollback(self, now: float) -> None:
        for sid, spec in self.specs.items():
            if spec["phase"] in ("run", "finalize") and self.steps[sid]["state"] in ("pending", "suspended"):
                self.set_step(sid, "cancelled", now, "rolled back before it started")
        self.to_undo = {
            sid
            for sid, spec in self.specs.items()
            if spec["phase"] in ("run", "finalize") and spec["undo"] and self.steps[sid]["state"] == "succeeded"
        }
        finalize = [sid for sid in self.to_undo if self.specs[sid]["phase"] == "finalize"]
        for sid in self.to_undo:
            after = [d for d in self.dependents.get(sid, ()) if d in self.to_undo]
            if self.specs[sid]["phase"] == "run":
                after += finalize
            self.blocking[sid] = len(set(after))
            if not self.blocking[sid] and sid not in self.undoing:
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
                inputs = {k: expr.evaluate(e, self.env) for k, e in spec["undo"]["inputs"].items()}
            except expr.EvalError as e:
                self._undo_failed(sid, error_record("InputError", str(e)), now)
                continue
            rec["undo"] = {"state": "running", "attempt": attempt, "started": now, "ended": None, "error": None}
            self.undoing.add(sid)
            self.dirty.add(sid)
            self.events.append({"t": now, "step": sid, "state": "undoing", "attempt": attempt})
            out.append(Launch(sid, attempt, spec["undo"]["action"], inputs, None, undo=True))
        return out

    def undone(self, sid: str, attempt: int, now: float) -> None:
        """The undo action of `sid` returned."""
        rec = self.steps[sid]
        if sid not in self.undoing or rec["undo"]["attempt"] != attempt:
            return
        self.undoing.discard(sid)
        rec["undo"].update(state="succeeded", ended=now)
        self.set_step(sid, "undone", now, _took(rec["undo"], now))
        self.to_undo.discard(sid)
        waited = self.deps[sid] + (self._run_phase_undos() if self.specs[sid]["phase"] == "finalize" else [])
        for d in waited:
            if d in self.to_undo:
                self.blocking[d] -= 1
                if not self.blocking[d]:
                    heapq.heappush(self.ready, (-self.specs[d]["level"], self.pos[d], d))

    def undo_failed(self, sid: str, attempt: int, error: dict, now: float) -> None:
        if sid in self.undoing and self.steps[sid]["undo"]["attempt"] == attempt:
            self._undo_failed(sid, error, now)

    def _undo_failed(self, sid: str, error: dict, now: float) -> None:
        self.undoing.discard(sid)
        rec = self.steps[sid]
        before = rec["undo"] or {"attempt": 0, "started": now}
        rec["undo"] = {**before, "state": "failed", "ended": now, "error": error}
        self.dirty.add(sid)
        self.events.append({"t": now, "step": sid, "state": "undo failed", "detail": describe_error(error)})

    def _run_phase_undos(self) -> list[str]:
        """The run-phase steps still to undo: each waits for every finalize step's undo."""
        return [sid for sid in self.to_undo if self.specs[sid]["phase"] == "run"]

    def _rollback_done(self, now: float) -> None:
        failed = sorted(sid for sid in self.to_undo if self._undo_state(sid) == "failed")
        if failed:
            first = self.steps[failed[0]]["undo"]["error"]
            self.run["error"] = f"rollback incomplete: undo of {failed[0]} failed: {describe_error(first)}"
        else:
            self.run["rolled_back"] = True
        self._end("failed", now)


def _outputs(steps: dict[str, dict], sid: str) -> dict:
    rec = steps.get(sid)
    if rec is None:
        raise expr.EvalError(f"no step '{sid}'")
    if rec["outputs"] is None:
        raise expr.EvalError(f"step '{sid}' has no outputs (it is {rec['state']})")
    return rec["outputs"]


def _took(rec: dict, now: float) -> str | None:
    return None if rec.get("started") is None else f"{now - rec['started']:.1f}s"
