"""`@action(undo="release")`: an undo named as a string, for an action defined further down its module."""

from __future__ import annotations

import pytest

from weft import action
from weft.sdk.actions import ActionDefinitionError, definition

ACTIONS = """
from typing import TypedDict
from weft import action


class Lease(TypedDict):
    ip: str


@action(undo="release")
def reserve(mac: str) -> Lease:
    with open("log.txt", "a") as f:
        f.write(f"reserve {mac}\\n")
    return {"ip": "10.0.0.7"}


@action
def fail(message: str) -> None:
    raise RuntimeError(message)


@action
def release(mac: str, ip: str) -> None:
    with open("log.txt", "a") as f:
        f.write(f"release {mac} {ip}\\n")
"""

FLOW = """use named_undo as n

flow host(mac: str) {
    lease = n.reserve(mac: mac)
    n.fail(message: "boom") after lease
}
"""


def test_an_undo_name_is_kept_as_the_actions_undo():
    @action(undo="release_it")
    def take(mac: str) -> None: ...

    assert definition(take).undo == "release_it"


def test_an_undo_name_must_be_a_name():
    with pytest.raises(ActionDefinitionError, match="undo 'not a name' is not the name of an action"):

        @action(undo="not a name")
        def take(mac: str) -> None: ...


def test_check_accepts_a_named_undo_and_a_rollback_calls_it(weft):
    (weft.folder / "named_undo.py").write_text(ACTIONS)
    (weft.folder / "host.flow").write_text(FLOW)
    weft("check", "host.flow", code=0)
    plan = weft("plan", "host.flow", "--json", code=0).stdout
    assert '"name": "release"' in plan
    rid, _ = weft.run("host.flow", "-i", "mac=52:54:00:00:00:07", code=3)
    weft("rollback", rid, code=0)
    assert (weft.folder / "log.txt").read_text().splitlines() == [
        "reserve 52:54:00:00:00:07",
        "release 52:54:00:00:00:07 10.0.0.7",
    ]


def test_a_named_undo_the_module_does_not_define_is_E117(weft):
    (weft.folder / "named_undo.py").write_text(ACTIONS.replace('undo="release"', 'undo="relase"'))
    (weft.folder / "host.flow").write_text(FLOW)
    done = weft("check", "host.flow", code=1)
    assert (
        "host.flow:1:1: error[E117]: action 'reserve' names undo 'relase', "
        "which module named_undo does not define (did you mean 'release'?)"
    ) in done.stdout + done.stderr
