"""The executor port over one event loop: `async def` actions as coroutines, with no thread per call.

An `AsyncExecutor` starts its loop (uvloop's when installed) in a thread of
its own on the first task. `submit` puts the task in a batch and wakes the
loop only when the batch was empty: the driver hands out thousands of tasks
in one round at the price of one `call_soon_threadsafe`, and the loop starts
the batch's asyncio Tasks SLICE at a time, one slice a turn of the loop, so
the first calls' requests are out (and their answers can come back) while the
rest are being started; each runs `perform_async` and reports its Outcome
through its channel. A call cancelled before its slice is never started. A
cancelled channel cancels that asyncio Task (the action sees CancelledError):
the Channel has no callback, so the loop looks at the channels of the calls in
flight every SWEEP seconds, one sweep for all of them. What the calls shared on the loop
(std.http's connections) is closed with the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from weft.runtime.executors.perform import perform_async
from weft.runtime.executors.port import Channel, Outcome, Task
from weft.sdk.loops import close_shared

SLICE = 100  # calls started in one turn of the loop, before it looks at its sockets again
SWEEP = 0.1  # seconds between looks at the channels of the calls in flight for a cancel
STOP = 2.0  # seconds `close` waits for cancelled calls to end and shared resources to close

_Call = tuple[Task, Channel, "Callable[[], None] | None"]


class AsyncExecutor:
    """Runs tasks of `async def` actions on one event loop, in a thread started on the first task."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # the loop's, running `_serve`
        self._lock = threading.Lock()
        self._batch: list[_Call] = []  # submitted, not yet taken by the loop (under _lock)
        self._calls: dict[asyncio.Task, Channel] = {}  # touched in the loop's thread only, as are the two below
        self._waiting: deque[_Call] = deque()  # taken from batches, not started yet
        self._starting = False  # a `_start` of the next slice is due
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
                self._thread = threading.Thread(target=_serve, args=(loop,), name="weft-async", daemon=True)
                self._thread.start()
        loop.call_soon_threadsafe(self._take)

    def close(self) -> None:
        """Cancel what still runs, close what the calls shared, and end the loop and its thread (within 2 x STOP).

        The thread is waited for: a loop left running when the process exits fires its next timer into an
        interpreter already gone (uvloop's timer callback then crashes the process, exit -11, after a run that
        had ended well)."""
        with self._lock:
            loop, thread, self._loop, self._batch = self._loop, self._thread, None, []  # (a batch not taken: dropped)
            self._thread = None
        if loop is None or thread is None:
            return
        stopped = asyncio.run_coroutine_threadsafe(self._stop(), loop)
        try:
            stopped.result(STOP + 1.0)
        except Exception:  # noqa: BLE001 - a call that does not end when cancelled: the loop is stopped all the same
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP)

    def _take(self) -> None:
        """Take the batch and start its first SLICE calls (in the loop's thread)."""
        with self._lock:
            batch, self._batch = self._batch, []
        self._waiting.extend(batch)
        if not self._starting:
            self._start()

    def _start(self) -> None:
        """Start the next SLICE waiting calls; the rest after the loop has looked at its sockets once.

        A batch of 10,000 started at once ran every call to its first wait before any connection it opened could
        send its request, so no answer could come back while the rest were being started."""
        loop = asyncio.get_running_loop()
        calls, waiting = self._calls, self._waiting
        for _ in range(min(SLICE, len(waiting))):
            task, channel, done = waiting.popleft()
            if channel.cancelled():  # while it waited for its slice: never called
                channel.finish(Outcome.cancelled())
                if done is not None:
                    done()
                continue
            calls[loop.create_task(self._run(task, channel, done))] = channel
        self._starting = bool(waiting)
        if waiting:
            loop.call_soon(self._start)
        if not self._sweeping:
            self._sweeping = True
            loop.create_task(self._sweep())

    async def _run(self, task: Task, channel: Channel, done: Callable[[], None] | None) -> None:
        try:
            outcome = await perform_async(task, channel)
        except asyncio.CancelledError:  # cancelled before the action was called
            outcome = Outcome.cancelled()
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
