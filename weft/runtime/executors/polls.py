"""A polling action on a worker: its `start` once, then one `poll` each time the step's timer is due.

`executor.perform` calls `call` with a step's inputs, or with the step's poll
record to poll once. What comes back travels to the driver like any action's
outputs: a Started (the handle and the PollSpec) after `start`, a
`weft.Pending` while the external task goes on, the outputs once it is done.
Nothing here sleeps: the waiting between polls is the driver's timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weft.sdk import actions
from weft.sdk import polling
from weft.sdk.context import Context
from weft.runtime.records import check_serializable


@dataclass(frozen=True, slots=True)
class Started:
    """What `start` returned, to persist, and when to poll it."""

    handle: Any
    spec: polling.PollSpec


def call(defn: actions.ActionDef, inputs: dict, ctx: Context, poll: dict | None) -> Any:
    """Outputs of a plain action; Started for a polling action's start; Pending or outputs for one poll."""
    if poll is not None:
        if defn.poll is None:
            raise actions.ActionResultError(f"action '{defn.name}' is no longer a polling action; cannot poll it")
        return polling.poll(defn, poll["handle"], ctx)
    if defn.poll is None:
        return actions.call(defn, inputs, ctx)
    handle = polling.start(defn, inputs, ctx)
    problem = check_serializable(handle)
    if problem:
        raise actions.ActionResultError(f"action '{defn.name}' started with a handle that cannot be stored: {problem}")
    return Started(handle, defn.poll)
