"""Text and JSON for what the Client returns: runs, steps, events, times (the CLI only presents them)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Any

from weft.client import Event, Run, RunSummary, Step, StepDetail


def clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def stamp(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    secs = end - start
    return f"{secs:.1f}s" if secs < 60 else f"{int(secs // 60)}m{int(secs % 60):02d}s"


def event_text(e: Event | dict) -> str:
    """One history event as `dhcp succeeded (0.2s)`."""
    if isinstance(e, dict):
        e = Event.of(e)
    who = e.step or "run"
    if e.log is not None:
        return f"{who} | {e.log}"
    if e.note is not None:
        return f"{who}: {e.note}" if e.step else e.note
    state, detail = e.state, e.detail
    if state == "running" and (e.attempt or 1) > 1:
        detail = f"attempt {e.attempt}"
    if state == "pending" and detail and detail.startswith("retry"):
        return f"{who} failed, {detail}"
    if state in ("failed", "undo failed", "paused") and detail:
        return f"{who} {state}: {detail}"
    return f"{who} {state}" + (f" ({detail})" if detail else "")


def _waiting(step: Step) -> str:
    """What a suspended step waits for: its next poll, or a signal; and until when."""
    if step.poll is not None:
        done = "" if step.poll.progress is None else f", {step.poll.progress * 100:.0f}% done"
        text = f"polling ({step.poll.polls} polls{done}), next at {clock(step.due)}"
    elif step.signal is not None:
        text = f"signal '{step.signal}'"
    else:
        text = "an external event"
    return text + (f", times out at {clock(step.deadline)}" if step.deadline else "")


def state(run: RunSummary) -> str:
    """A run's state as lists and `show` print it: `failed (rolled back)`, `running (owner gone: resume or cancel)`."""
    if run.orphaned:
        return f"{run.state} (owner gone: resume or cancel)"
    return run.state + (" (rolled back)" if run.rolled_back else "")


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _error(step: Step) -> str:
    """The ERROR / WAITING FOR column of a step."""
    if step.undo is not None and step.undo.state == "failed":
        return f"undo: {step.undo.error or ''}"
    if step.state == "suspended":
        return _waiting(step)
    if step.state in ("failed", "skipped", "pending") and step.error is not None:
        return str(step.error)
    return ""


def task_cancel(step: Step) -> str:
    """How the cancel of the external task a polling step started went."""
    c = step.cancel
    if c.state == "cancelled":
        text = "its external task was cancelled"
    elif c.state == "pending":
        text = "its external task is being cancelled (not confirmed yet)"
    else:
        text = "its external task could not be cancelled: it may still run"
    return f"{text} (attempt {c.attempt})" + (f": {c.detail}" if c.detail else "")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + ("  " + r[-1] if r[-1] else "") for r in rows]


# -- weft show RUN ---------------------------------------------------------------------------


def run_text(run: Run) -> str:
    """`weft show`: the run's fields, its steps, what failed, its sub-runs, its history."""
    lines = [
        f"run      {run.id}",
        f"flow     {run.flow}" + (f"  ({run.file})" if run.file else ""),
        f"label    {run.label or '-'}",
        f"state    {state(run)}   progress {run.progress * 100:.0f}%",
        f"user     {run.user}   tags {', '.join(run.tags) or '-'}",
        f"created  {stamp(run.created)}   ended {stamp(run.ended)}"
        + (f"   took {duration(run.started, run.ended)}" if run.ended and run.started else ""),
    ]
    if run.due is not None:
        by = f", to start by {stamp(run.start_by)}" if run.start_by is not None else ""
        lines.append(f"due      {stamp(run.due)}{by}")
    if run.schedule is not None:
        lines.append(f"schedule {run.schedule.name}, slot {stamp(run.schedule.slot)}")
    if run.owner is not None:
        gone = "" if run.owner.alive else f" (gone: weft resume {run.id} goes on, weft cancel {run.id} stops it)"
        lines.append(f"owner    pid {run.owner.pid} on {run.owner.host}{gone}")
    if run.inputs:
        lines.append("inputs   " + ", ".join(f"{k}={_short(v)}" for k, v in run.inputs.items()))
    if run.result:
        lines.append("result   " + ", ".join(f"{k}={_short(v)}" for k, v in run.result.items()))
    if run.error:
        lines.append(f"error    {run.error}")
    if len(run.steps) < run.steps_total:
        lines.append(f"steps    {run.steps_total} in all: {phase_counts(run.counts)}")
    queued = any(s.queue for s in run.steps)  # a QUEUE column only for a run that routes some step
    placed = any(s.agent for s in run.steps)  # an AGENT column only for a run that ran steps on agents
    head = ("STEP", "PHASE", "STATE", "TRIES", "STARTED", "TOOK") + ("QUEUE",) * queued + ("AGENT",) * placed
    rows = [head + ("ERROR / WAITING FOR",)]
    for s in run.steps:
        took = duration(s.started, s.ended) if s.state != "running" else ""
        where = (s.queue or "-",) * queued + (s.agent or "-",) * placed
        rows.append((s.id, s.phase, s.state, str(s.attempts), clock(s.started), took) + where + (_error(s),))
    lines += ["", *table(rows)]
    if len(run.steps) < run.steps_total:
        more = run.steps_total - len(run.steps)
        lines.append(f"... {more} more step{'s' * (more != 1)} (weft show {run.id} --steps all prints every one)")
    failed = [s for s in run.steps if s.state == "failed" or (s.undo is not None and s.undo.state == "failed")]
    if failed:
        lines += ["", "failed steps (weft show RUN STEP shows a step's inputs, outputs and traceback)"]
        lines += [f"  {s.id}: {_error(s) or 'failed'}   weft show {run.id} {s.id}" for s in failed]
    left = [s for s in run.steps if s.cancel is not None and not s.cancel.cancelled]
    if left:
        lines += ["", "external tasks that may still run (their cancel did not succeed, or is not confirmed)"]
        lines += [f"  {s.id}: {task_cancel(s)}" for s in left]
    origins = [s for s in run.steps if s.origin is not None]
    if origins:
        lines += ["", "steps from extensions"]
        lines += [f"  {s.id}  {_path(s.origin.extension)}:{s.origin.line}" for s in origins]
    for s in run.steps:
        subs = s.sub_runs
        if subs is None:
            continue
        counts = ", ".join(f"{n} {state}" for state, n in subs.counts.items())
        lines += [
            "",
            f"sub-runs of {s.id}: {counts or 'none yet'} ({subs.done} done, {subs.failed} failed, {subs.total} in all)",
        ]
        shown = subs.runs if len(subs.runs) <= 20 else [r for r in subs.runs if r.state != "succeeded"][:50]
        lines += [f"  {r.index + 1:>4}  {r.id}  {r.state:<9}  {r.label or ''}".rstrip() for r in shown]
        if len(shown) < len(subs.runs):
            lines.append(f"  (weft list --parent {run.id} lists all {len(subs.runs)})")
    if len(run.history) < run.history_total:
        lines += ["", f"history (the last {len(run.history)} of {run.history_total} events; --steps all prints all)"]
    else:
        lines += ["", "history"]
    lines += [f"{e.seq:>5}  {clock(e.t)}  {event_text(e)}" for e in run.history]
    return "\n".join(line.rstrip() for line in lines)


def phase_counts(by_phase: dict[str, dict[str, int]]) -> str:
    """`run phase: 49990 succeeded, 10 failed; finalize phase: 2 pending`."""
    return "; ".join(
        f"{phase} phase: " + ", ".join(f"{n} {state}" for state, n in states.items())
        for phase, states in by_phase.items()
    )


def _event_json(e: Event) -> dict[str, Any]:
    return {k: v for k, v in asdict(e).items() if v is not None}


def _step_json(run: Run, s: Step) -> dict[str, Any]:
    data = asdict(s)
    if s.sub_runs is not None:
        subs = s.sub_runs
        data["sub_runs"] = [
            {"id": r.id, "state": r.state, "label": r.label, "parent": {"run": run.id, "step": s.id, "index": r.index}}
            for r in subs.runs
        ]
        data["sub_run_progress"] = {"done": subs.done, "failed": subs.failed, "total": subs.total}
        data["sub_run_counts"] = subs.counts
    return data


def run_json(run: Run) -> dict[str, Any]:
    """Everything `weft show --json` prints."""
    data = asdict(run)
    data["owner"] = None if run.owner is None else asdict(run.owner)
    data["orphaned"] = run.orphaned
    data["steps"] = [_step_json(run, s) for s in run.steps]
    data["history"] = [_event_json(e) for e in run.history]
    data["actions"] = sorted(run.actions)
    return data


# -- weft show RUN STEP --------------------------------------------------------------------------


def _values(title: str, values: dict | None) -> list[str]:
    if not values:
        return [f"{title:<9}-"]
    return [title] + [f"  {k} = {json.dumps(v, sort_keys=True, default=str)}" for k, v in values.items()]


def step_text(d: StepDetail) -> str:
    """`weft show RUN STEP`: one step's inputs, outputs, error and traceback, and its history."""
    s = d.step
    lines = [
        f"run      {d.run_id}",
        f"step     {s.id}" + (f"  ({s.name})" if s.name and s.name != s.id else "") + f"   {s.kind}, {s.phase} phase",
    ]
    if s.action:
        lines.append(f"action   {s.action}" + (f"   undo {d.undo_action}" if d.undo_action else ""))
    if s.queue:
        lines.append(f"queue    {s.queue}")
    if s.agent:
        lines.append(f"agent    {s.agent}")
    if d.deps:
        lines.append(f"after    {', '.join(d.deps)}")
    lines.append(f"state    {s.state}   attempts {s.attempts}")
    lines.append(
        f"started  {stamp(s.started)}   ended {stamp(s.ended)}"
        + (f"   took {duration(s.started, s.ended)}" if s.ended and s.started else "")
    )
    if s.origin is not None:
        lines.append(f"from     {_path(s.origin.extension)}:{s.origin.line}")
    if s.state == "suspended":
        lines.append(f"waiting  for {_waiting(s)}")
    lines += _values("inputs", s.inputs)
    lines += _values("outputs", s.outputs)
    for title, error in (("error", s.error), ("undo error", s.undo.error if s.undo else None)):
        if error is not None:
            lines.append(f"{title:<9}{error}")
            if error.traceback:
                lines += ["traceback"] + [f"  {line}" for line in error.traceback.rstrip().splitlines()]
    if s.undo is not None:
        lines.append(f"undo     {s.undo.state or 'to run again'}   attempt {s.undo.attempt}")
    if s.cancel is not None:
        lines.append(f"task     {task_cancel(s)}")
    if s.sub_runs is not None:
        subs = s.sub_runs
        lines.append(
            f"sub-runs {subs.done} done, {subs.failed} failed, {subs.total} in all (weft list --parent {d.run_id})"
        )
    lines += ["", "history"]
    lines += [f"{e.seq:>5}  {clock(e.t)}  {event_text(e)}" for e in d.history]
    return "\n".join(line.rstrip() for line in lines)


def step_json(d: StepDetail) -> dict[str, Any]:
    data = asdict(d)
    data["history"] = [_event_json(e) for e in d.history]
    return data
