"""Polling actions through the public API: definition, start/poll, local calls."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest

from weft import Context, Pending, action
from weft.sdk.actions import ActionDefinitionError, call, definition
from weft.sdk.polling import PollSpec, poll, start


class Synced(TypedDict):
    packages: int


@action(idempotent=True, poll_every=0.01, poll_max=0.04, poll_factor=2.0)
class sync_repository:
    """Sync a repository from its upstream.

    Longer text that hovers do not show."""

    def start(self, repository_id: int, ctx: Context) -> Any:
        return {"repo": repository_id, "left": 2}

    def poll(self, handle: Any, ctx: Context) -> Synced | Pending:
        if handle["left"] > 0:
            handle["left"] -= 1
            return Pending(progress=0.5)
        return {"packages": handle["repo"] * 10}


def test_a_class_with_start_and_poll_is_a_polling_action():
    defn = definition(sync_repository)
    assert defn.poll == PollSpec(0.01, 0.04, 2.0)
    assert [(p.name, str(p.type)) for p in defn.params] == [("repository_id", "int")]
    assert str(defn.outputs) == "(packages: int)"
    assert defn.context_param == "ctx" and defn.idempotent
    assert defn.doc == "Sync a repository from its upstream."


def test_start_gives_a_plain_handle_and_poll_reports_pending_then_outputs():
    defn = definition(sync_repository)
    progress: list[float] = []
    ctx = Context("r", "sync", on_progress=progress.append)
    handle = start(defn, {"repository_id": 4}, ctx)
    assert handle == {"repo": 4, "left": 2}
    assert isinstance(poll(defn, handle, ctx), Pending)
    assert isinstance(poll(defn, handle, ctx), Pending)
    assert poll(defn, handle, ctx) == {"packages": 40}
    assert progress == [0.5, 0.5]


def test_call_runs_a_polling_action_to_the_end():
    assert call(definition(sync_repository), {"repository_id": 3}) == {"packages": 30}


def test_intervals_grow_up_to_the_maximum():
    spec = PollSpec(1.0, 5.0, 2.0)
    seen, interval = [], None
    for _ in range(5):
        interval = spec.next_interval(interval)
        seen.append(interval)
    assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_malformed_polling_action_lists_every_problem():
    with pytest.raises(ActionDefinitionError) as err:

        @action(poll_every=0)
        class broken:
            def start(self, x) -> Any:
                return x

    problems = err.value.problems
    assert "a polling action needs a method 'poll'" in problems
    assert any("poll_every" in p for p in problems)
