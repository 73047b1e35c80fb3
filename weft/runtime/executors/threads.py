"""Where actions run: a `concurrent.futures.Executor`, threads by default.

The driver only calls `submit(fn, *args)` and `add_done_callback`, so any
Executor serves (a process pool, or a distributed engine's client) as long as
`perform` and its arguments can travel to it.

`ThreadExecutor` differs from `ThreadPoolExecutor` in three ways a durable
runtime needs: its threads are never joined at exit, so an action abandoned
after its timeout cannot keep the process alive; it starts a thread whenever
none is idle, so abandoned actions do not eat the driver's concurrency (the
driver bounds how many actions run at once); and it starts threads without
waiting for each to check in (`_thread`), which on a busy machine makes
starting 200 of them ten times faster.
"""

from __future__ import annotations

import _thread
import queue
import threading
import time
import traceback
from concurrent.futures import Executor, Future
from typing import Any, Callable

from weft.sdk import actions
from weft.sdk.polling import Pending
from weft.runtime.executors import polls
from weft.runtime.records import check_serializable
from weft.runtime.core.states import error_record


class ThreadExecutor(Executor):
    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self._work.put((future, fn, args, kwargs))
        if not self._idle.acquire(blocking=False):
            self._threads += 1
            _thread.start_new_thread(self._serve, ())
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # reported through the future
                    future.set_exception(e)
            del item, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._closed:
            self._closed = True
            for _ in range(self._threads):
                self._work.put(None)


_defs: dict[tuple[str, str], actions.ActionDef] = {}


def perform(
    run_id: str,
    step: str,
    attempt: int,
    action: dict,
    inputs: dict,
    deadline: float | None,
    on_progress: Callable[[float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    poll: dict | None = None,
) -> tuple[bool, Any, float]:
    """Run one action: (True, outputs, seconds) or (False, error record, seconds).

    A polling action is only started (outputs: a polls.Started); with `poll`,
    the step's poll record, it is polled once (outputs: a Pending, or the
    action's). Never raises for the action's faults.
    """
    started = time.perf_counter()
    ok, payload = _call(run_id, step, attempt, action, inputs, deadline, on_progress, on_log, cancel, poll)
    return ok, payload, time.perf_counter() - started


def _call(run_id, step, attempt, action, inputs, deadline, on_progress, on_log, cancel, poll) -> tuple[bool, Any]:
    """`perform` without the clock."""
    try:
        key = (action["module"], action["name"])
        defn = _defs.get(key)
        if defn is None:
            defn = _defs[key] = actions.lookup(*key)
        ctx = actions.Context(
            run_id, step, attempt, on_progress=on_progress, on_log=on_log, deadline=deadline, cancel_event=cancel
        )
        outputs = polls.call(defn, inputs, ctx, poll)
    except LookupError as e:
        return False, error_record("ActionNotFound", str(e))
    except KeyboardInterrupt:  # reaches only an action the driver called in the main thread
        raise
    except BaseException as e:  # the action's failure, whatever it is, fails the step
        return False, error_record(type(e).__name__, str(e) or type(e).__name__, traceback.format_exc())
    if isinstance(outputs, (polls.Started, Pending)):
        return True, outputs
    problem = check_serializable(outputs)
    if problem:
        return False, error_record("OutputError", f"outputs cannot be stored: {problem}")
    return True, outputs
