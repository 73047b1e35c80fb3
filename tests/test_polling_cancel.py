"""A polling action's `cancel(self, handle)`: `weft cancel`, a step's `timeout` and a rollback of a step that still
holds its external task call it in the process driving the run; the history and `weft show` say how it went."""

from __future__ import annotations

import os
import time

import pytest
from conftest import run_id

from weft import action
from weft.sdk.actions import ActionDefinitionError

TASKS = '''
import os
from typing import Any, TypedDict
from weft import ActionFailed, Context, Pending, action


class Synced(TypedDict):
    packages: int


def _log(folder: str, line: str) -> None:
    with open(os.path.join(folder, "log"), "a") as f:
        f.write(line + "\\n")


class _Task:
    """An external task: a file `<id>` in `folder`; it is done once a file `<id>.done` appears."""

    def start(self, folder: str, ctx: Context) -> Any:
        task = f"{ctx.step_id}-{ctx.attempt}"
        _log(folder, f"start {task}")
        return {"folder": folder, "task": task}

    def poll(self, handle: Any) -> Synced | Pending:
        if os.path.exists(os.path.join(handle["folder"], "poll-fails")):
            raise ActionFailed("the task service is down")
        if os.path.exists(os.path.join(handle["folder"], handle["task"] + ".done")):
            return {"packages": 7}
        return Pending()


@action(poll_every=0.05, poll_max=0.05)
class sync(_Task):
    def cancel(self, handle: Any) -> None:
        _log(handle["folder"], f"cancel {handle['task']}")


@action(poll_every=0.05, poll_max=0.05)
class stubborn(_Task):
    def cancel(self, handle: Any) -> None:
        raise ActionFailed(f"task {handle['task']} is past cancelling")


@action(poll_every=0.05, poll_max=0.05)
class plain(_Task):
    pass
'''

FLOWS = """use ext_tasks as x

flow synced(folder: str) -> (packages: int) {
    s = x.sync(folder: folder)
    return (packages: s.packages)
}

flow timed(folder: str) {
    s = x.sync(folder: folder) timeout 1s
}

flow stubborn(folder: str) {
    s = x.stubborn(folder: folder) timeout 1s
}

flow plain(folder: str) {
    s = x.plain(folder: folder) timeout 1s
}

flow failing(folder: str) {
    s = x.sync(folder: folder) retry 3 backoff 10ms
}
"""


@pytest.fixture
def tasks(weft):
    (weft.folder / "ext_tasks.py").write_text(TASKS)
    (weft.folder / "tasks.flow").write_text(FLOWS)
    return weft


def log(weft) -> list[str]:
    path = weft.folder / "log"
    return path.read_text().splitlines() if path.exists() else []


def notes(weft, rid: str) -> list[str]:
    return [e["note"] for e in weft.show(rid)["history"] if e.get("step") == "s" and e.get("note")]


def wait_for(check, timeout: float = 20.0):
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_weft_cancel_of_a_run_driven_elsewhere_cancels_its_task_there(tasks):
    proc = tasks.start("run", "tasks.flow", "--flow", "synced", "-i", f"folder={tasks.folder}")
    rid = run_id(proc.stdout.readline().strip())
    wait_for(lambda: log(tasks) == ["start s-1"] and tasks.steps(rid)["s"]["state"] == "suspended")
    done = tasks("cancel", rid, code=0)
    assert "asked it to cancel" in done.stdout
    assert proc.wait(30) == 1
    assert log(tasks) == ["start s-1", "cancel s-1"]
    assert notes(tasks, rid) == ["its external task was cancelled"]
    assert tasks.steps(rid)["s"]["cancel"]["state"] == "cancelled"


def test_weft_cancel_of_a_run_nobody_drives_cancels_its_task_itself(tasks):
    rid = tasks("run", "--detach", "tasks.flow", "--flow", "synced", "-i", f"folder={tasks.folder}").stdout.split()[1]
    tasks("worker", "--once", code=0)  # starts the task, then lets the run go until its next poll
    assert tasks.steps(rid)["s"]["state"] == "suspended"
    done = tasks("cancel", rid, code=0)
    lines = done.stdout.splitlines()
    assert lines[0] == f"run {rid}: no live process drives it; cancelling it here"
    assert lines[-1] == f"run {rid} cancelled" and lines[-2].endswith(" s: its external task was cancelled"), lines
    assert log(tasks) == ["start s-1", "cancel s-1"]
    shown = tasks("show", rid, "s", code=0).stdout
    assert "task     its external task was cancelled (attempt 1)" in shown


def test_a_timeout_cancels_the_task_and_resume_starts_a_new_one(tasks):
    rid, done = tasks.run("tasks.flow", "--flow", "timed", "-i", f"folder={tasks.folder}", code=3)
    assert "step s failed: Timeout: timed out after 1s" in done.stdout
    assert log(tasks) == ["start s-1", "cancel s-1"]
    assert notes(tasks, rid) == ["its external task was cancelled"]
    (tasks.folder / "s-2.done").write_text("")
    tasks("resume", rid, code=0)  # the cancelled task is not polled again: a new one starts
    assert log(tasks) == ["start s-1", "cancel s-1", "start s-2"]


def test_a_cancel_that_fails_or_is_missing_is_shown(tasks):
    rid, _ = tasks.run("tasks.flow", "--flow", "stubborn", "-i", f"folder={tasks.folder}", code=3)
    assert notes(tasks, rid) == ["its external task could not be cancelled: ActionFailed: task s-1 is past cancelling"]
    shown = tasks("show", rid, code=0).stdout
    assert "external tasks that may still run (their cancel did not succeed, or is not confirmed)" in shown
    assert (
        "  s: its external task could not be cancelled: it may still run (attempt 1): "
        "ActionFailed: task s-1 is past cancelling"
    ) in shown
    rid, _ = tasks.run("tasks.flow", "--flow", "plain", "-i", f"folder={tasks.folder}", code=3)
    assert notes(tasks, rid) == ["its external task goes on: action 'plain' defines no cancel(self, handle)"]
    assert (
        "could not be cancelled: it may still run (attempt 1): action 'plain' defines no cancel"
        in tasks("show", rid, "s", code=0).stdout
    )


def test_a_rollback_cancels_the_task_of_a_step_whose_polls_failed(tasks):
    (tasks.folder / "poll-fails").write_text("")
    rid, done = tasks.run("tasks.flow", "--flow", "failing", "-i", f"folder={tasks.folder}", code=3)
    assert "the task service is down" in done.stdout
    assert log(tasks) == ["start s-1"]  # its polls failed: the task may still run
    tasks("rollback", rid, ok=(0, 1))
    assert log(tasks) == ["start s-1", "cancel s-1"]
    assert notes(tasks, rid) == ["its external task was cancelled"]


def test_cancel_must_take_the_handle():
    with pytest.raises(ActionDefinitionError, match=r"'cancel' must be a method cancel\(self, handle\)"):

        @action
        class broken:
            def start(self, n: int) -> dict:
                return {}

            def poll(self, handle: dict) -> None:
                return None

            def cancel(self) -> None:
                pass

    assert os.environ.get("WEFT_DEBUG") is None
