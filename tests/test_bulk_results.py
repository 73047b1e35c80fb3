"""An `each` step's `results`, and reads of outputs that may be absent, through real `weft` processes.

The flows are in runtime_support/results.flow. A bulk run of N hosts collects
each host's result in item order; `??` and `?` give a skipped step's outputs
their default or none, inside `each` bodies too; quoted record keys reach the
action as written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Weft

FLOW = str(Path(__file__).resolve().parent / "runtime_support" / "results.flow")


@pytest.fixture
def weft(tmp_path) -> Weft:
    w = Weft(tmp_path)
    w.timeout = 120.0
    return w


def run(weft: Weft, flow: str, *inputs: str, code: int) -> dict:
    rid, _ = weft.run(FLOW, "--flow", flow, *(a for i in inputs for a in ("-i", i)), code=code)
    return weft.show(rid)


def test_a_bulk_run_of_twelve_hosts_collects_their_results_in_item_order(weft):
    names = [f"h{n}" for n in range(12)]
    shown = run(weft, "hosts", "names=" + json.dumps(names), f"marker={weft.tmp}/fail-", code=0)
    assert shown["state"] == "succeeded"
    assert shown["result"] == {"ips": [{"name": n, "ip": f"10.0.0.{n}"} for n in names], "made": 12}
    made = weft.steps(shown["id"])["made"]["outputs"]
    assert made["total"] == 12 and made["succeeded"] == 12 and made["failed"] == 0


def test_a_host_that_failed_and_was_resumed_has_its_result_in_its_place(weft):
    names = ["a", "b", "c", "d"]
    marker = f"{weft.tmp}/fail-"
    Path(f"{marker}c").write_text("")
    shown = run(weft, "hosts", "names=" + json.dumps(names), f"marker={marker}", code=3)
    assert shown["state"] == "paused"
    Path(f"{marker}c").unlink()
    weft("resume", shown["id"], code=0)
    after = weft.show(shown["id"])
    assert after["state"] == "succeeded"
    assert [r["ip"] for r in after["result"]["ips"]] == ["10.0.0.a", "10.0.0.b", "10.0.0.c", "10.0.0.d"]


def test_a_body_that_ends_in_return_gives_its_record_per_item(weft):
    shown = run(weft, "doubles", "items=[3, 1, 2]", code=0)
    assert shown["result"] == {"out": [{"i": 3, "double": 6}, {"i": 1, "double": 2}, {"i": 2, "double": 4}]}


def test_defaults_and_optionals_stand_in_for_a_skipped_step(weft):
    shown = run(weft, "maybe", "flag=false", code=0)
    assert shown["result"] == {
        "ip": "0.0.0.0",
        "opt": None,
        "headers": {"Content-Type": "application/json", "X-Probe": None},
        "inside": [{"v": "none 1"}, {"v": "none 2"}],
    }
    shown = run(weft, "maybe", "flag=true", code=0)
    assert shown["result"]["ip"] == "10.1.1.1" and shown["result"]["opt"] == {"value": "10.1.1.1"}
    assert shown["result"]["headers"]["X-Probe"] == "10.1.1.1"
    assert shown["result"]["inside"] == [{"v": "10.1.1.1"}, {"v": "10.1.1.1"}]
