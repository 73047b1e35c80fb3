"""A bulk run cancelled while its sub-runs wait between polls: their external tasks are cancelled too.

Nobody drives such a sub-run at that instant (it was let go until its next
poll), so the cancel of its parent ends it cancelled in the same transaction
and queues it; the process driving the parent (or any worker) claims it and
calls its polling action's `cancel` before it lets go.
"""

from __future__ import annotations

import time

import pytest
from conftest import run_id
from test_polling_cancel import TASKS, log, wait_for

BULK = """use ext_tasks as x

flow many(folder: str, items: list[int]) {
    made = each i in items concurrency 5 {
        s = x.sync(folder: folder)
    }
}
"""


@pytest.fixture
def tasks(weft):
    (weft.folder / "ext_tasks.py").write_text(TASKS)
    (weft.folder / "bulk.flow").write_text(BULK)
    return weft


def test_the_tasks_of_sub_runs_cancelled_between_polls_are_cancelled_by_the_parents_process(tasks):
    proc = tasks.start("run", "bulk.flow", "-i", f"folder={tasks.folder}", "-i", "items=[1,2]")
    rid = run_id(proc.stdout.readline().strip())
    wait_for(lambda: log(tasks) == ["start s-1", "start s-1"])
    time.sleep(0.5)  # their polls are due every 0.05 s: they are let go between them
    tasks("cancel", rid, code=0)
    assert proc.wait(30) == 1
    assert sorted(log(tasks)) == ["cancel s-1", "cancel s-1", "start s-1", "start s-1"]
    assert all(tasks.show(sub["id"])["state"] == "cancelled" for sub in tasks.show(rid)["steps"][0]["sub_runs"])


def test_a_worker_cancels_the_tasks_of_sub_runs_cancelled_between_polls(tasks):
    proc = tasks.start("run", "bulk.flow", "--detach", "-i", f"folder={tasks.folder}", "-i", "items=[1,2]")
    out, _ = proc.communicate(timeout=30)
    rid = run_id(out.strip())
    worker = tasks.start("worker")
    try:
        wait_for(lambda: log(tasks) == ["start s-1", "start s-1"])
        tasks("cancel", rid, code=0)
        wait_for(lambda: sorted(log(tasks)) == ["cancel s-1", "cancel s-1", "start s-1", "start s-1"])
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    assert tasks.show(rid)["state"] == "cancelled"
