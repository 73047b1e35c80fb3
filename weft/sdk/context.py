"""`Context`: what the runtime hands an action that asks for one.

An action receives it through a parameter annotated `Context`: ids of the
run and step, the attempt number, progress and log reporting, a deadline,
and cancellation. The runtime builds one per attempt.
"""

from __future__ import annotations

import threading
from typing import Callable


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
        """Sleep up to `seconds`, waking at once on cancellation; True if cancelled."""
        return self._cancel.wait(max(0.0, seconds))
