"""Signals: which delivery of a signal is the first, the one a waiting step gets (later ones are refused)."""

from __future__ import annotations

import time

from weft.client.errors import Conflict, steer
from weft.runtime.core import steering
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import RUN_ENDED, StepState
from weft.runtime.stores.port import Txn

SIGNAL = "signal\0"  # requests left for a run's owner: signal\0<name>


def first_signal(t: Txn, rid: str, name: str) -> Machine:
    """Run `rid` as stored in `t`, with a step waiting for signal `name` that no delivery has reached yet.

    Conflict when one has (its signal applied, or a request for it left for the
    run's owner or workers): the first signal wins, later ones are refused.
    """
    m = Machine(t.plan(rid), t.run(rid), t.steps(rid), time.time())
    waits = [sid for sid, s in m.specs.items() if s["kind"] == "wait" and s["wait"]["signal"] == name]
    pending = any(n == SIGNAL + name for n, _ in t.requests(rid))
    if not pending and steering.waiting_for(m, name):
        return m
    got = waits if pending else [sid for sid in waits if m.steps[sid]["state"] == StepState.SUCCEEDED]
    if got and m.run["state"] not in RUN_ENDED:
        raise Conflict(
            f"step {', '.join(got)} of run {rid} already got signal '{name}'; this one was not delivered",
            state=m.run["state"],
        )
    try:
        steer(steering.signal)(m, name, {}, time.time())  # raises: says why nothing waits for it
    except Conflict as e:
        if got:
            raise Conflict(f"{e} (step {', '.join(got)} already got signal '{name}')", state=e.state) from None
        raise
    return m  # not reached: with no step waiting, steering refuses the signal
