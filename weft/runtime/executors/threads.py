"""Plain (not async) actions in threads of the driver's own process.

`ThreadExecutor` is the executor port over threads, the half of the local
executor (local.py) that runs plain actions: each task runs `perform` in a
thread and reports through its channel directly (no Future: the channel is
the answer).

`Threads`, the pool under it, is a `concurrent.futures.Executor` that differs
from `ThreadPoolExecutor` in three ways a durable runtime needs: its threads
are never joined at exit, so an action abandoned after its timeout cannot keep
the process alive; it starts a thread whenever none is idle, so abandoned
actions do not eat the driver's concurrency (the driver bounds how many
actions run at once); and it starts threads without waiting for each to check
in (`_thread`), which on a busy machine makes starting 200 of them ten times
faster.
"""

from __future__ import annotations

import _thread
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from weft.runtime.executors.perform import perform
from weft.runtime.executors.port import Channel, Task


class Threads(Executor):
    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads = 0  # started (under _counting: drivers of sub-runs submit from threads of their own)
        self._counting = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self.run(_settle, future, fn, args, kwargs)
        return future

    def run(self, fn: Callable[..., None], *args: Any) -> None:
        """Call `fn(*args)` in a thread, with no Future: `fn` reports its own outcome and must not raise."""
        self._work.put((fn, args))
        if not self._idle.acquire(blocking=False):
            with self._counting:
                self._threads += 1
            _thread.start_new_thread(self._serve, ())

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            fn, args = item
            fn(*args)
            del item, fn, args
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._closed:
            self._closed = True
            with self._counting:
                started = self._threads
            for _ in range(started):
                self._work.put(None)


class ThreadExecutor:
    """The executor port over threads of this process."""

    def __init__(self) -> None:
        self.threads = Threads()

    def submit(self, task: Task, channel: Channel, done: Callable[[], None] | None = None) -> None:
        """Run `task` in a thread; `done()` is called there once its channel heard the outcome."""
        self.threads.run(_run, task, channel, done)

    def close(self) -> None:
        self.threads.shutdown(wait=False)


def _settle(future: Future, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - reported through the future
            future.set_exception(e)


def _run(task: Task, channel: Channel, done: Callable[[], None] | None) -> None:
    channel.finish(perform(task, channel))
    if done is not None:
        done()
