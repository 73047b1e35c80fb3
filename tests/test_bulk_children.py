"""The pure decisions of an `each` step waiting for its children (weft.runtime.core.children)."""

from __future__ import annotations

from weft.runtime.core.children import Child, Tally, look, to_roll_back


def kids(*states: str) -> dict[int, Child]:
    return {i: Child(i, f"R{i}", s, f"host {i + 1}") for i, s in enumerate(states)}


def test_releases_at_most_concurrency_children_and_fills_slots_as_they_end():
    assert look(10, 3, {}, {}).release == [0, 1, 2]
    assert look(10, 3, kids("running", "running", "running"), {}).release == []
    assert look(10, 3, kids("succeeded", "running", "pending"), {}).release == [3]
    assert look(10, None, {}, {}).release == list(range(10))  # no concurrency: all at once


def test_a_paused_child_gives_its_slot_back_but_keeps_the_step_waiting():
    found = look(4, 2, kids("paused", "succeeded", "running"), {})
    assert found.release == [3] and not found.done and found.progress == 0.25


def test_done_when_every_item_ended_or_paused_succeeded_only_if_all_did():
    ok = look(3, 2, kids("succeeded", "succeeded", "succeeded"), {})
    assert ok.done and ok.outputs == {"total": 3, "succeeded": 3, "failed": 0} and ok.progress == 1.0
    found = kids("succeeded", "paused", "succeeded")
    found[1] = Child(1, "R1", "paused", "host 2", "step gate was interrupted")
    bad = look(3, 2, found, {})
    assert bad.done and bad.outputs is None and bad.progress == 0.6667
    assert bad.failure == "1 of 3 sub-runs did not succeed: host 2 (R1, paused: step gate was interrupted)"


def test_an_item_whose_child_could_not_be_made_fails_the_step_once_nothing_else_runs():
    waiting = look(2, 2, kids("running"), {1: "lock 'x' is held by run Z"})
    assert waiting.release == [] and not waiting.done
    done = look(2, 2, kids("succeeded"), {1: "lock 'x' is held by run Z"})
    assert done.failure == "1 of 2 sub-runs did not succeed: item 2 (not started: lock 'x' is held by run Z)"


def test_no_items_succeed_at_once():
    assert look(0, 5, {}, {}).outputs == {"total": 0, "succeeded": 0, "failed": 0}


def test_rollback_order_is_the_reverse_of_completion_paused_ones_first():
    children = [
        Child(0, "A", "succeeded", ended=10.0),
        Child(1, "B", "succeeded", ended=30.0),
        Child(2, "C", "paused"),
        Child(3, "D", "failed", ended=20.0, rolled_back=True),
        Child(4, "E", "cancelled", ended=25.0),
    ]
    assert [c.run for c in to_roll_back(children)] == ["C", "B", "E", "A"]


def test_a_tally_keeps_its_counts_as_children_change_and_decides_as_look_does():
    tally = Tally(kids("running", "running", "pending").values())
    assert tally.look(6, 3, {}).release == []
    tally.put(Child(0, "R0", "succeeded"))
    tally.put(Child(0, "R0", "succeeded"))  # read again: counted once
    tally.put(Child(1, "R1", "paused"))  # gives its slot back, keeps the step from finishing
    assert (tally.active, tally.succeeded) == (1, 1)
    assert tally.look(6, 3, {}).release == [3, 4] == look(6, 3, tally.children, {}).release
    for i in range(2, 6):
        tally.put(Child(i, f"R{i}", "succeeded"))
    done = tally.look(6, 3, {})
    assert done.done and done.failure == "1 of 6 sub-runs did not succeed: item 2 (R1, paused)"
    tally.put(Child(1, "R1", "succeeded"))  # resumed and ended
    assert tally.look(6, 3, {}).outputs == {"total": 6, "succeeded": 6, "failed": 0}
