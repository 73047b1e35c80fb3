"""Where actions run by default: the local executor, threads for plain actions and one event loop for `async def` ones.

`LocalExecutor.submit` looks the task's action up (the driver's process
imports it anyway) and hands the task of an `async def` action to its
AsyncExecutor, any other to its ThreadExecutor. An action declared
`@action(concurrency=N)` has at most N calls running here at once, and a step
declared `concurrency N` at most N in this process across its run's family;
the others wait in line (their steps are running as far as the run is
concerned, and their timeouts count) and start as earlier ones finish
(limits.py).

`room` tells the driver how many calls of a plan it may have in flight: its
thread bound (`workers`) for plain actions and its separate, higher bound
(`concurrency`) for async ones. The driver cannot tell which kind the next
ready steps call, so a plan with more plain-action steps than either bound,
and async ones too, keeps the lower bound for all of them.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from weft.runtime.executors import limits
from weft.runtime.executors.perform import action_of
from weft.runtime.executors.port import Channel, Task
from weft.runtime.executors.threads import ThreadExecutor
from weft.sdk.actions import ActionDef

if TYPE_CHECKING:
    from weft.runtime.executors.asyncio import AsyncExecutor


class LocalExecutor:
    """The executor port in this process: threads for plain actions, one event loop for `async def` ones."""

    def __init__(self) -> None:
        self.threaded = ThreadExecutor()
        self._looped: AsyncExecutor | None = None  # made for the first `async def` call: asyncio is imported then
        self._gate = limits.Gate()  # the actions' bounds, keyed by action
        self._making = threading.Lock()  # guards the making of `looped`

    @property
    def looped(self) -> AsyncExecutor:
        """The one AsyncExecutor (made by the first `async def` call): the drivers of sub-runs share this executor
        from threads of their own, and two of them once each made one, whose loop nobody closed."""
        if self._looped is None:
            with self._making:
                if self._looped is None:
                    from weft.runtime.executors.asyncio import AsyncExecutor

                    self._looped = AsyncExecutor()
        return self._looped

    def submit(self, task: Task, channel: Channel) -> None:
        defn = _action(task.action, task.search_path)
        executor = self.looped if defn is not None and defn.asynchronous else self.threaded
        gates = [] if task.limit is None else [(limits.STEPS, task.limit_key, task.limit)]  # the step's bound
        if defn is not None and defn.concurrency is not None:
            gates.append((self._gate, (defn.module, defn.name), defn.concurrency))
        limits.submit_within(gates, executor.submit, task, channel)

    def asynchronous(self, ref: dict[str, str], search_path: list[str]) -> bool:
        """Whether the action `ref` names is an `async def` one (run on the loop)."""
        defn = _action(ref, search_path)
        return defn is not None and defn.asynchronous

    def room(self, plan: dict, workers: int, concurrency: int) -> int:
        """How many calls of `plan`'s steps may be in flight at once: `workers` threads, `concurrency` async calls."""
        search_path = list(plan.get("search_path") or ())
        calls = Counter((s["action"]["module"], s["action"]["name"]) for s in plan["steps"] if s.get("action"))
        calls.update(
            (s["undo"]["action"]["module"], s["undo"]["action"]["name"])
            for s in plan["steps"]
            if (s.get("undo") or {}).get("action")
        )
        plain = sum(
            n
            for (module, name), n in calls.items()
            if not self.asynchronous({"module": module, "name": name}, search_path)
        )
        if plain == sum(calls.values()):
            return workers
        return concurrency if plain <= min(workers, concurrency) else min(workers, concurrency)

    def close(self) -> None:
        self.threaded.close()
        if self._looped is not None:
            self._looped.close()


def _action(ref: dict[str, str] | None, search_path: list[str]) -> ActionDef | None:
    """The action `ref` names, or None when there is none to be found (its call reports that)."""
    if ref is None:
        return None
    try:
        return action_of(ref, search_path)
    except Exception:  # noqa: BLE001 - a module that does not import: the call itself reports it
        return None
