"""The public Python client: start, list, read, wait for and steer runs, as the CLI and the server do.

    from weft.client import Client

    client = Client("/var/lib/myapp/weft")          # else $WEFT_STORE, else ./.weft
    inputs = {"name": "web1", "mac": "52:54:00:00:00:01", "subnet": "10.0.0.0/24"}
    run_id = client.start("examples/foreman/host.flow", inputs=inputs)   # checked as `weft run` checks them
    run = client.wait(run_id)                        # a Run: state, result, steps, history, allowed actions

Errors are NotFound, Conflict and InvalidInput (all WeftError subclasses).
"""

from __future__ import annotations

from weft.client.errors import CompileFailed, Conflict, FlowRequired, InvalidInput, NotFound
from weft.client.model import (
    ACTIONS,
    Event,
    Origin,
    Owner,
    Page,
    Parent,
    Poll,
    Progress,
    Run,
    RunSummary,
    Slot,
    Step,
    StepDetail,
    StepError,
    TaskCancel,
    SubRun,
    SubRuns,
    Undo,
)
from weft.client.operations import Client, login

_ANSWERS = (
    "Bulk",
    "Change",
    "Changes",
    "Delivery",
    "Diagram",
    "Lock",
    "Pruned",
    "Refusal",
    "RollbackPreview",
    "Schedule",
    "ScheduleEntry",
    "WorkerProcess",
)  # answers.py: imported on first use, so that running or showing a run does not make these classes


def __getattr__(name: str) -> object:
    if name in _ANSWERS:
        from weft.client import answers

        return getattr(answers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIONS",
    "Bulk",
    "Change",
    "Changes",
    "Client",
    "CompileFailed",
    "Conflict",
    "Delivery",
    "Diagram",
    "Event",
    "FlowRequired",
    "InvalidInput",
    "Lock",
    "NotFound",
    "Origin",
    "Owner",
    "Page",
    "Parent",
    "Poll",
    "Progress",
    "Pruned",
    "Refusal",
    "RollbackPreview",
    "Run",
    "RunSummary",
    "Schedule",
    "ScheduleEntry",
    "Slot",
    "Step",
    "StepDetail",
    "StepError",
    "TaskCancel",
    "SubRun",
    "SubRuns",
    "Undo",
    "WorkerProcess",
    "login",
]
