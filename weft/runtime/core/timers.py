"""Timers: when a step may start again, is to be polled, or runs out of time.

A step record says which timers it needs (`step_timers`): the Machine keeps
them on its heap for the run it drives, a store indexes them so that whoever
looks for runs needing a process finds the earliest one. Both derive them from
the record, so they always agree, and a restart rebuilds them from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from weft.plan.schema import StepRecord
from weft.runtime.core.states import ACTIVE, StepState


class TimerKind(StrEnum):
    RETRY = "retry"  # a failed step waiting out its backoff
    POLL = "poll"  # a suspended polling step's next poll
    DEADLINE = "deadline"  # a running or suspended step's `timeout` (a signal wait's too)


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """Timer `kind` of attempt `attempt` of step `step` of run `run` is due at `due` (epoch seconds)."""

    due: float
    kind: TimerKind
    step: str
    attempt: int = 0
    run: str = ""


def step_timers(step: str, rec: StepRecord | None, run: str = "") -> list[Timer]:
    """The timers step record `rec` calls for."""
    if rec is None:
        return []
    state, attempt, found = rec["state"], rec["attempts"], []
    if state == StepState.PENDING and rec.get("due") is not None:
        found.append(Timer(rec["due"], TimerKind.RETRY, step, attempt, run))
    if state == StepState.SUSPENDED and rec.get("poll") is not None:
        found.append(Timer(rec.get("due") or rec["started"], TimerKind.POLL, step, attempt, run))
    if state in ACTIVE and rec.get("deadline") is not None:
        found.append(Timer(rec["deadline"], TimerKind.DEADLINE, step, attempt, run))
    return found
