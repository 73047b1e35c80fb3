"""The executor port over one event loop: `async def` actions as coroutines, with no thread per call.

An `AsyncExecutor` starts its loop (uvloop's when installed) in a thread of
its own on the first task. `submit` puts the task in a batch and wakes the
loop only when the batch was empty: the driver hands out thousands of tasks
in one round at the price of one `call_soon_threadsafe`, and the loop starts
the batch's asyncio Tasks together, each running `perform_async` and
reporting its Outcome through its channel. A cancelled channel cancels that
asyncio Task (the action sees CancelledError): the Channel has no callback,
so the loop looks at the channels of the calls in flight every SWEEP
seconds, one sweep for all of them. What the calls shared on the loop
(std.http's connections) is closed with the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from weft.runtime.core.states import error_record
from weft.runtime.executors.perform import perform_async
from weft.runtime.executors.port import Channel, Outcome, Task
from weft.sdk.loops import close_shared

SWEEP = 0.1  # seconds between looks at the channels of the calls in flight for a cancel
STOP = 2.0  # seconds `close` waits for cancelled calls to end and shared resources to close

_Call = tuple[Task, Channel, "Callable[[], None] | None"]


class AsyncExecutor:
    """Runs tasks of `async def` actions on one event loop, in a thread started on the first task."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._batch: list[_Call] = []  # submitted, not yet taken by the loop (under _lock)
        self._calls: dict[asyncio.Task, Channel] = {}  # touched in the loop's thread only
        self._sweeping = False

    def submit(self, task: Task, channel: Channel, done: Callable[[], None] | None = None) -> None:
        """Run `task` on the loop; `done()` is called in the loop's thread once its channel heard the outcome."""
        with self._lock:
            self._batch.append((task, channel, done))
            if len(self._batch) > 1:
                return  # the loop has been woken for this batch and has not taken it yet
            loop = self._loop
            if loop is None:
                loop = self._loop = new_loop()
                threading.Thread(target=_serve, args=(loop,), name="weft-async", daemon=True).start()
        loop.call_soon_threadsafe(self._take)

    def close(self) -> None:
        with self._lock:
            loop, self._loop, self._batch = self._loop, None, []  # a batch not taken yet is dropped with the loop
        if loop is None:
            return
        stopped = asyncio.run_coroutine_threadsafe(self._stop(), loop)
        try:
            stopped.result(STOP + 1.0)
        except Exception:  # noqa: BLE001 - a loop that does not stop in time is left to die with the process
            return
        loop.call_soon_threadsafe(loop.stop)

    def _take(self) -> None:
        """Start the calls of the batch (in the loop's thread)."""
        with self._lock:
            batch, self._batch = self._batch, []
        loop = asyncio.get_running_loop()
        calls = self._calls
        for task, channel, done in batch:
            calls[loop.create_task(self._run(task, channel, done))] = channel
        if not self._sweeping:
            self._sweeping = True
            loop.create_task(self._sweep())

    async def _run(self, task: Task, channel: Channel, done: Callable[[], None] | None) -> None:
        try:
            outcome = await perform_async(task, channel)
        except asyncio.CancelledError:  # cancelled before the action was called
            outcome = Outcome(False, error=error_record("Cancelled", "the call was cancelled"))
        del self._calls[asyncio.current_task()]
        channel.finish(outcome)
        if done is not None:
            done()

    async def _sweep(self) -> None:
        """Cancel the calls whose channel was cancelled, every SWEEP seconds while any runs."""
        try:
            while self._calls:
                await asyncio.sleep(SWEEP)
                for call in [call for call, channel in self._calls.items() if channel.cancelled()]:
                    if not call.cancelling():
                        call.cancel()
        finally:
            self._sweeping = False

    async def _stop(self) -> None:
        """Cancel what still runs (the sweep too), then close what the calls shared."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for other in others:
            other.cancel()
        if others:
            await asyncio.wait(others, timeout=STOP)
        await asyncio.wait_for(close_shared(), STOP)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (its callbacks and sockets cost about half as much CPU), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()
