"""Helpers to test actions without a runtime: run one with a recording Context."""

from __future__ import annotations

import threading
from typing import Any, Callable

from weft.sdk.actions import ActionDef, Context, call, definition


class RecordingContext(Context):
    """A Context that keeps what the action reports in `progress_reports` and `log_lines`."""

    def __init__(
        self,
        step_id: str = "step",
        attempt: int = 1,
        deadline: float | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.progress_reports: list[float] = []
        self.log_lines: list[str] = []
        super().__init__(
            "test", step_id, attempt, self.progress_reports.append, self.log_lines.append, deadline, cancel_event
        )


class Outputs(dict):
    """An action's outputs, with the `context` it ran with."""

    context: RecordingContext


def run_action(fn: Callable[..., Any] | ActionDef, /, **inputs: Any) -> Outputs:
    """Run one action with `inputs` as the runtime would; return its checked outputs."""
    defn = fn if isinstance(fn, ActionDef) else definition(fn)
    ctx = RecordingContext(defn.name)
    outputs = Outputs(call(defn, inputs, ctx))
    outputs.context = ctx
    return outputs
