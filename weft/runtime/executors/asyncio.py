"""The executor port over one event loop: `async def` actions as coroutines, with no thread per call.

An `AsyncExecutor` starts its loop in a thread of its own on the first task.
`submit` hands the task to the loop, which runs `perform_async` as an asyncio
Task and reports the Outcome through the task's channel. A cancelled channel
cancels that asyncio Task (the action sees CancelledError): the Channel has no
callback, so the loop looks at the channels of the calls in flight every
SWEEP seconds, one sweep for all of them. What the calls shared on the loop
(std.http's connection pool) is closed with the loop.
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


class AsyncExecutor:
    """Runs tasks of `async def` actions on one event loop, in a thread started on the first task."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._calls: dict[asyncio.Task, Channel] = {}  # touched in the loop's thread only
        self._sweeping = False

    def submit(self, task: Task, channel: Channel, done: Callable[[], None] | None = None) -> None:
        """Run `task` on the loop; `done()` is called in the loop's thread once its channel heard the outcome."""
        self._started().call_soon_threadsafe(self._start, task, channel, done)

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        stopped = asyncio.run_coroutine_threadsafe(self._stop(), loop)
        try:
            stopped.result(STOP + 1.0)
        except Exception:  # noqa: BLE001 - a loop that does not stop in time is left to die with the process
            return
        loop.call_soon_threadsafe(loop.stop)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=_serve, args=(loop,), name="weft-async", daemon=True).start()
                self._loop = loop
            return self._loop

    def _start(self, task: Task, channel: Channel, done: Callable[[], None] | None) -> None:
        call = asyncio.ensure_future(self._run(task, channel, done))
        self._calls[call] = channel
        if not self._sweeping:
            self._sweeping = True
            asyncio.ensure_future(self._sweep())

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
                for call, channel in list(self._calls.items()):
                    if channel.cancelled() and not call.cancelling():
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


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()
