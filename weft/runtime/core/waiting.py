"""Steps that wait without holding a worker: polling actions, signal waits, timeouts.

Pure changes to a Machine, like steering.py: the machine calls `arm` and
`fire` for its timers, the driver reports what a polling action answered.

A polling step is `running` while its action's `start` is called, then
`suspended` with a poll record in its step record,

    {"handle": what start returned, "every", "max_every", "factor": its PollSpec,
     "interval": seconds before the poll now awaited, "polls": polls made, "progress": last reported}

and `due`, the time of its next poll. When `due` comes, `launch` hands out a
Launch with `poll` set; a worker polls once; `Pending` schedules the next poll
(intervals grow by `factor` up to `max_every`), outputs end the step as any
action's would, an error goes through the step's retry and error policy. No
worker is held in between, and the handle and next poll are persisted, so a
new owner goes on polling after a restart. A run does not pause or fail while
a polling step is suspended: like a running step, it is waited for.

A step with a `timeout` records its absolute `deadline` when it starts (a
signal wait: when it suspends), so the limit holds across restarts: a step
found past its deadline when a run is taken over fails with a Timeout.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from weft.sdk.polling import PollSpec
from weft.runtime.core.states import error_record

if TYPE_CHECKING:
    from weft.runtime.core.machine import Machine


def is_polling(rec: dict) -> bool:
    """Whether a step record is a polling action between polls."""
    return rec["state"] == "suspended" and rec.get("poll") is not None


def arm(m: Machine, sid: str, now: float) -> None:
    """Put the deadline and next poll of step `sid`, as recorded, on the machine's timers."""
    rec = m.steps[sid]
    if rec["state"] in ("running", "suspended") and rec["deadline"] is not None:
        heapq.heappush(m.timers, (rec["deadline"], "deadline", sid, rec["attempts"]))
    if is_polling(rec):
        heapq.heappush(m.timers, (rec["due"] or now, "poll", sid, rec["attempts"]))


def fire(m: Machine, kind: str, sid: str, attempt: int, now: float) -> None:
    """Timer `kind` ("poll" or "deadline") of attempt `attempt` of `sid` is due."""
    rec = m.steps[sid]
    if kind == "poll" and is_polling(rec) and rec["due"] is not None and rec["due"] <= now:
        m.poll_due[sid] = None
    elif kind == "deadline" and rec["state"] in ("running", "suspended"):
        m.failed(sid, attempt, timeout_error(m.specs[sid]), now)


def timeout_error(spec: dict) -> dict:
    if spec["kind"] == "wait":
        return error_record("Timeout", f"no signal '{spec['wait']['signal']}' in time")
    return error_record("Timeout", f"timed out after {spec['timeout']:g}s")


def overdue(m: Machine, sid: str, now: float) -> bool:
    """Whether step `sid` is past its deadline."""
    deadline = m.steps[sid]["deadline"]
    return deadline is not None and deadline <= now


def take_due_polls(m: Machine, slots: int) -> list[str]:
    """Up to `slots` polling steps whose poll is due, marked as being polled."""
    out: list[str] = []
    while m.poll_due and len(out) < slots:
        sid = next(iter(m.poll_due))
        del m.poll_due[sid]
        rec = m.steps[sid]
        if is_polling(rec):
            rec["due"] = None  # being polled: no second poll until this one answers
            out.append(sid)
    return out


def started(m: Machine, sid: str, attempt: int, handle: Any, spec: PollSpec, now: float) -> None:
    """The `start` of polling step `sid` returned `handle`: suspend it until its first poll."""
    rec = m.steps[sid]
    if rec["state"] != "running" or rec["attempts"] != attempt:
        return
    interval = spec.next_interval(None)
    poll = {
        "handle": handle,
        "every": spec.every,
        "max_every": spec.max_every,
        "factor": spec.factor,
        "interval": interval,
        "polls": 0,
        "progress": None,
    }
    m.set_step(sid, "suspended", now, f"started; first poll in {interval:g}s", poll=poll, due=now + interval)
    heapq.heappush(m.timers, (now + interval, "poll", sid, attempt))


def pending(m: Machine, sid: str, attempt: int, progress: float | None, now: float) -> None:
    """A poll found the external task still going: poll again after a longer interval."""
    rec = m.steps[sid]
    if not is_polling(rec) or rec["attempts"] != attempt:
        return
    poll = rec["poll"]
    interval = PollSpec(poll["every"], poll["max_every"], poll["factor"]).next_interval(poll["interval"])
    rec["poll"] = {
        **poll,
        "interval": interval,
        "polls": poll["polls"] + 1,
        "progress": poll["progress"] if progress is None else progress,
    }
    rec["due"] = now + interval
    m.unsaved.add(sid)  # persisted with the next commit: if lost, the next owner just polls sooner
    heapq.heappush(m.timers, (rec["due"], "poll", sid, attempt))


def polled(m: Machine, sid: str, attempt: int, outputs: dict, now: float) -> None:
    """A poll returned the outputs: the step succeeded."""
    rec = m.steps[sid]
    if not is_polling(rec) or rec["attempts"] != attempt:
        return
    polls = rec["poll"]["polls"] + 1
    m.set_step(
        sid,
        "succeeded",
        now,
        f"{now - rec['started']:.1f}s, {polls} poll{'s' if polls > 1 else ''}",
        outputs=outputs,
        ended=now,
        due=None,
        poll={**rec["poll"], "polls": polls, "progress": 1.0},
    )
    m.release(sid, now)


def settle(m: Machine, outcome: str, now: float) -> None:
    """The run ended: a step still waiting is cancelled, and no step keeps a timer."""
    for sid, rec in m.steps.items():
        if rec["state"] == "suspended":
            m.set_step(sid, "cancelled", now, f"the run {outcome}", due=None)
        elif rec["state"] == "pending" and rec["due"] is not None:
            rec["due"] = None
            m.dirty.add(sid)


def progress(m: Machine) -> dict[str, float]:
    """The progress the polling steps last reported, by step."""
    return {sid: m.steps[sid]["poll"]["progress"] for sid in m.polling if m.steps[sid]["poll"]["progress"] is not None}
