"""`Context`: what the runtime hands an action that asks for one.

An action receives it through a parameter annotated `Context`: ids of the
run and step, the attempt number, progress and log reporting, a deadline,
and cancellation. The runtime builds one per attempt. All of it works from
an `async def` action too, where `await ctx.sleep(s)` waits without blocking
the event loop.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

CHECK = 0.25  # seconds between looks at the cancellation while `sleep` waits


class Context:
    """One attempt of one step, as its action sees it."""

    def __init__(
        self,
        run_id: str,
        step_id: str,
        attempt: int = 1,
        on_progress: Callable[[float], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        deadline: float | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.attempt = attempt
        self.deadline = deadline
        self._on_progress = on_progress
        self._on_log = on_log
        self._cancel = threading.Event() if cancel_event is None else cancel_event

    def __repr__(self) -> str:
        return f"Context({self.run_id!r}, {self.step_id!r}, attempt={self.attempt})"

    def progress(self, fraction: float) -> None:
        """Report how far the action has got, from 0.0 to 1.0 (clamped)."""
        if self._on_progress is not None:
            self._on_progress(min(1.0, max(0.0, float(fraction))))

    def log(self, message: str) -> None:
        """Add a line to the run's log (printed as `[run/step] message` when nothing records it)."""
        if self._on_log is None:
            print(f"[{self.run_id}/{self.step_id}] {message}", flush=True)
        else:
            self._on_log(str(message))

    def cancelled(self) -> bool:
        """Whether the run was cancelled: a long action should stop soon after."""
        return self._cancel.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancellation; True if cancelled (blocks: not in a coroutine)."""
        return self._cancel.wait(max(0.0, seconds))

    async def sleep(self, seconds: float) -> bool:
        """`wait` for a coroutine: sleep up to `seconds` without blocking the event loop; True if cancelled.

        On Weft's executors a cancel (or the step's deadline) also cancels the
        coroutine itself, so this ends at once with CancelledError.
        """
        import asyncio  # imported by coroutines only

        end = time.monotonic() + max(0.0, seconds)
        while not self.cancelled() and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, CHECK))
        return self.cancelled()
