"""An `each` step in the pure core: it waits for its children as a polling step does."""

from __future__ import annotations

from runtime_support import diagrams as plans

from weft.runtime.core import events as ev
from weft.runtime.core.machine import Machine
from weft.runtime.core.states import new_run, new_step

T0 = 1_000.0
HOSTS = {"hosts": ["a", "b", "c", "d"], "subnet": "10.0.0.0/24"}


def started() -> tuple[Machine, int]:
    """A bulk run whose `each` step just started: (machine, the each step's attempt)."""
    plan = plans.bulk_plan()
    m = Machine(
        plan,
        new_run("R" * 26, plan, HOSTS, label=None, locks=[], user="u", now=T0),
        {s["id"]: new_step() for s in plan["steps"]},
        T0,
    )
    (check,) = m.launches(T0, 4)
    m.apply(ev.Succeeded("check", check.attempt, {"subnet": "10.0.0.0/24"}), T0)
    (each,) = m.launches(T0, 4)
    assert each.step == "each" and each.items == ["a", "b", "c", "d"]
    return m, each.attempt


def test_the_each_step_waits_without_a_slot_and_a_woken_step_is_looked_at_at_once():
    m, attempt = started()
    m.apply(ev.PollStarted("each", attempt, {"items": 4}, 0.5, 5.0, 1.5), T0)
    assert m.steps["each"]["state"] == "suspended" and m.launches(T0 + 0.1, 4) == []
    assert m.apply(ev.Woken("each"), T0 + 0.1) == ["each"]
    (look,) = m.launches(T0 + 0.1, 4)
    assert look.poll is not None and look.step == "each"
    assert m.apply(ev.Woken("each"), T0 + 0.2) == []  # its look is out: nothing more to do
    m.apply(ev.PollPending("each", attempt, 0.5), T0 + 0.3)
    assert m.progress() == round(1.5 / 3, 4)  # check, and half of the each step


def test_a_failed_each_step_counts_the_children_that_succeeded():
    m, attempt = started()
    m.apply(ev.PollStarted("each", attempt, {"items": 4}, 0.5, 5.0, 1.5), T0)
    failure = {"type": "SubRunsFailed", "message": "1 of 4 sub-runs did not succeed", "traceback": None}
    m.apply(ev.Failed("each", attempt, {**failure, "progress": 0.75}), T0 + 1)
    m.launches(T0 + 1, 4)
    assert m.run["state"] == "paused" and m.progress() == round(1.75 / 3, 4)


def test_an_each_step_that_starts_after_a_cancel_is_cancelled_not_left_waiting():
    m, attempt = started()
    m.apply(ev.Cancel(by="someone"), T0)
    m.apply(ev.PollStarted("each", attempt, {"items": 4}, 0.5, 5.0, 1.5), T0 + 0.1)
    m.launches(T0 + 0.1, 4)
    assert m.steps["each"]["state"] == "cancelled" and m.run["state"] == "cancelled"


def test_a_rollback_undoes_an_each_step_even_without_an_undo_action():
    m, attempt = started()
    m.apply(ev.PollStarted("each", attempt, {"items": 4}, 0.5, 5.0, 1.5), T0)
    m.apply(ev.Succeeded("each", attempt, {"total": 4, "succeeded": 4, "failed": 0}), T0 + 1)
    (report,) = m.launches(T0 + 1, 4)
    m.apply(ev.Succeeded("report", report.attempt, {}), T0 + 1)
    m.launches(T0 + 1, 4)
    assert m.run["state"] == "succeeded"
    m.apply(ev.Rollback(force=True), T0 + 2)
    undos = m.launches(T0 + 2, 4)
    assert [(u.step, u.undo, u.action) for u in undos] == [("each", True, None)]
