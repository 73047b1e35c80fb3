"""What a person (or a new owner process) does to a run: pure changes to a Machine.

Each function checks that the command makes sense for the run's state and
raises a WeftError saying why not *before* changing anything; the caller
persists `machine.changes()` afterwards.
"""

from __future__ import annotations

from typing import Any

from weft.errors import WeftError
from weft.runtime.core import waiting
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import UNFINISHED, error_record
from weft.suggest import suggest

INTERRUPTED = "Interrupted"


def _ended(m: Machine, done: str) -> WeftError | None:
    """Why a run that has ended cannot be `done` (resumed, changed, cancelled), or None."""
    run = m.run
    state = run["state"]
    if state == "succeeded":
        return WeftError(f"run {run['id']} already succeeded; it cannot be {done}")
    if state == "cancelled":
        return WeftError(f"run {run['id']} was cancelled; it cannot be {done}")
    if state == "failed":
        if run["rolled_back"]:
            return WeftError(f"run {run['id']} was rolled back; it cannot be {done}")
        return WeftError(f"run {run['id']} failed; it cannot be {done} (weft rollback {run['id']} undoes its steps)")
    return None


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


def recover(m: Machine, now: float) -> list[str]:
    """After the previous owner died: re-run what was running if idempotent, else fail it.

    A step past its deadline fails with a Timeout instead. Suspended steps go
    on waiting (polling steps are polled again). Returns the ids of the steps
    marked failed ("interrupted") for a human.
    """
    interrupted = []
    for sid in sorted(m.running, key=m.pos.__getitem__):
        spec = m.specs[sid]
        if waiting.overdue(m, sid, now):
            m.failed(sid, m.steps[sid]["attempts"], waiting.timeout_error(spec), now)
        elif spec["kind"] == "each" or spec["action"]["idempotent"]:  # an each step finds its sub-runs again
            m.set_step(sid, "pending", now, "interrupted; runs again (idempotent)", due=None)
            m.rerun.append(sid)
        else:
            m.set_step(
                sid,
                "failed",
                now,
                "interrupted",
                ended=now,
                error=error_record(INTERRUPTED, "interrupted: the process running it stopped"),
            )
            interrupted.append(sid)
    for sid in sorted(m.undoing, key=m.pos.__getitem__):
        m.undoing.discard(sid)
        rec = m.steps[sid]
        if m.specs[sid]["undo"]["action"]["idempotent"]:
            rec["undo"] = {**rec["undo"], "state": None}
            m.dirty.add(sid)
        else:
            rec["undo"] = {
                **rec["undo"],
                "state": "failed",
                "ended": now,
                "error": error_record(INTERRUPTED, "interrupted: the process running it stopped"),
            }
            m.dirty.add(sid)
            interrupted.append(sid)
    if interrupted and m.run["stage"] in ("run", "finalize"):
        m.stop("pause", now)
        m.run["error"] = f"step {interrupted[0]} was interrupted"
        m.run_dirty = True
    m.enter(m.run["stage"], now)
    return interrupted


def resume(m: Machine, now: float) -> list[str]:
    """Retry the failed steps of a paused run and go on; returns their ids."""
    err = _ended(m, "resumed")
    if err:
        raise err
    retried = []
    if m.run["state"] == "paused":
        phases = ("run", "finalize") if m.run["stage"] in ("run", "finalize") else ()
        for sid, spec in m.specs.items():
            if spec["phase"] in phases and m.steps[sid]["state"] == "failed":
                m.set_step(sid, "pending", now, "retried by resume", retries_used=0, due=None)
                retried.append(sid)
        m.halt = m.run["halt"] = None
        m.set_run("running", now, "resumed", error=None)
    m.enter(m.run["stage"], now)
    return retried


def skip(m: Machine, sid: str, outputs: dict[str, Any] | None, now: float) -> None:
    """Mark failed step `sid` skipped (with hand-given outputs) so its dependents go on."""
    err = _ended(m, "changed")
    if err:
        raise err
    rec = m.steps[sid]
    if rec["state"] != "failed":
        raise WeftError(f"step {sid} is {rec['state']}, not failed; only a failed step can be skipped")
    m.set_step(sid, "skipped", now, "skipped by hand", outputs=outputs)
    m.release(sid, now)
    remaining = [s for s in m.specs if m.steps[s]["state"] == "failed" and m.specs[s]["phase"] in ("run", "finalize")]
    m.halt = m.run["halt"] = None
    for s in remaining:
        policy = m.specs[s]["on_error"] or m.plan.get("on_error") or "pause"
        m.stop("pause" if m.steps[s]["error"]["type"] == INTERRUPTED else policy, now)
    if m.run["state"] == "paused" and not remaining:
        m.set_run("running", now, f"continues after skipping {sid}", error=None)
    m.enter(m.run["stage"], now)


def cancel(m: Machine, now: float) -> None:
    """Cancel every step that is not running; the run ends cancelled once running ones finish."""
    err = _ended(m, "cancelled")
    if err:
        raise err
    for sid in m.specs:
        state = m.steps[sid]["state"]
        if (state in UNFINISHED or state == "failed") and sid not in m.running:
            m.set_step(sid, "cancelled", now, "run cancelled", due=None)
    m.stop("cancel", now)
    if m.run["state"] != "running":
        m.set_run("running" if m.running else "cancelled", now, "cancel requested")


def without_undo(m: Machine) -> list[str]:
    """Succeeded steps that a rollback cannot undo."""
    return [
        sid
        for sid, spec in m.specs.items()
        if spec["phase"] in ("run", "finalize")
        and m.steps[sid]["state"] == "succeeded"
        and not spec["undo"]
        and not (spec["action"] or {}).get("pure")
    ]


def rollback(m: Machine, now: float, force: bool) -> None:
    """Undo every succeeded step in reverse dependency order; the run then ends failed."""
    run = m.run
    if run["state"] == "failed" and run["rolled_back"]:
        raise WeftError(f"run {run['id']} was already rolled back")
    if run["state"] == "running" and m.running:
        raise WeftError(f"run {run['id']} has running steps; cancel it or wait for it to pause")
    if run["state"] == "running" and m.polling:
        raise WeftError(
            f"run {run['id']} has steps polling external tasks ({', '.join(sorted(m.polling)[:5])}); "
            "resume it to let them finish, or cancel it"
        )
    missing = without_undo(m)
    if missing and not force:
        raise WeftError(
            f"cannot roll back run {run['id']}: succeeded step{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} ha{'ve' if len(missing) > 1 else 's'} no undo "
            f"(--force rolls back the others and leaves {'them' if len(missing) > 1 else 'it'} as done)"
        )
    m.halt = run["halt"] = None
    run.update(ending=None, rolled_back=False)
    m.set_run("running", now, "rollback" + (f" (without undo: {', '.join(missing)})" if missing else ""))
    m.enter("rollback", now)


def waiting_for(m: Machine, name: str) -> list[str]:
    """Steps suspended on signal `name`."""
    return [
        sid
        for sid, spec in m.specs.items()
        if spec["kind"] == "wait" and spec["wait"]["signal"] == name and m.steps[sid]["state"] == "suspended"
    ]


def signal(m: Machine, name: str, fields: dict[str, Any], now: float) -> list[str]:
    """Deliver signal `name`: every step waiting for it succeeds with `fields` as outputs."""
    err = _ended(m, "signalled")
    if err:
        raise err
    targets = waiting_for(m, name)
    if not targets:
        raise WeftError(_not_waiting(m, name))
    for sid in targets:
        m.set_step(sid, "succeeded", now, f"signal '{name}'", outputs=dict(fields), ended=now, deadline=None)
        m.release(sid, now)
    return targets


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
            if m.specs[s]["kind"] == "wait" and m.steps[s]["state"] == "suspended"
        }
    )
    also = f" (it waits for: {', '.join(signals)})" if signals else ""
    return f"run {m.run['id']} has no step waiting for signal '{name}'{also}"


def failed_steps(m: Machine) -> list[str]:
    """Ids of the failed steps, in plan order."""
    return [sid for sid in m.specs if m.steps[sid]["state"] == "failed"]
