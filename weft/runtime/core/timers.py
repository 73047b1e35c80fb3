"""Timers: when a step may start again, is to be polled, or runs out of time.

A step record says which timers it needs (`step_timers`): the Machine keeps
them on its heap for the run it drives, a store indexes them so that whoever
looks for runs needing a process finds the earliest one. Both derive them from
the record, so they always agree, and a restart rebuilds them from it.

No stored value can put a timer out of range: a delay is capped at
MAX_DELAY (the compiler's longest duration, ten years) and a timer's time is
clamped to [0, LATEST], so a plan or record written by anything (an older
compiler, a hand-edited store) never crashes the code that packs timer keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from weft.plan.schema import StepRecord
from weft.runtime.core.states import ACTIVE, StepState

MAX_DELAY = 10 * 365 * 86400.0  # seconds: the longest retry delay (the compiler's longest duration)
LATEST = 253402300799.0  # 9999-12-31 23:59:59 UTC: no timer is due later


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


def retry_delay(backoff: float, n: int) -> float:
    """Seconds before retry `n` (1, 2, ...): `backoff` doubling each time, capped at MAX_DELAY."""
    if not backoff > 0:  # zero, negative or not a number
        return 0.0
    return min(MAX_DELAY, backoff * 2.0 ** min(max(n - 1, 0), 64))


def clamp(t: float) -> float:
    """Time `t` (epoch seconds) within [0, LATEST]; not a number: LATEST."""
    if not math.isfinite(t) or t > LATEST:
        return LATEST
    return max(0.0, t)


_PENDING, _SUSPENDED = StepState.PENDING, StepState.SUSPENDED  # (bound once: read for every record written)


def step_timers(step: str, rec: StepRecord | None, run: str = "") -> list[Timer]:
    """The timers step record `rec` calls for."""
    if rec is None:
        return []
    state, attempt, found = rec["state"], rec["attempts"], []
    if state == _PENDING and rec.get("due") is not None:
        found.append(Timer(clamp(rec["due"]), TimerKind.RETRY, step, attempt, run))
    if state == _SUSPENDED and rec.get("poll") is not None:
        found.append(Timer(clamp(rec.get("due") or rec["started"] or 0.0), TimerKind.POLL, step, attempt, run))
    if state in ACTIVE and rec.get("deadline") is not None:
        found.append(Timer(clamp(rec["deadline"]), TimerKind.DEADLINE, step, attempt, run))
    return found
