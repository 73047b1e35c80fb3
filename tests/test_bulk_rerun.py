"""A bulk run's items re-run one at a time (`weft rerun PARENT STEP --item N`): the parent sees what they are now.

- Re-running an item of a bulk run that succeeded refreshes that item's entry
  of the `each` step's `results`, and the parent's result, in the sub-run's
  own commit (nothing else looks at the sub-runs again).
- A process that looked at the sub-runs before (and remembers those that
  ended) reads them again when the step is resumed, so an item re-run from
  another process in between counts as it is now.
"""

from __future__ import annotations

import json

from weft.client import Client

ACTIONS = """
import os
from typing import TypedDict

from weft.sdk.actions import ActionFailed, action


class Got(TypedDict):
    value: str


@action(idempotent=True)
def read(path: str) -> Got:
    with open(path) as f:
        return {"value": f.read().strip()}


@action(idempotent=True)
def gate(path: str) -> None:
    if os.path.exists(path):
        raise ActionFailed(f"{path} exists")
"""

FLOW = """use ra as r

flow item(name: str, path: str) -> (name: str, value: str) {
    got = r.read(path: "${path}${name}")
    shut = r.gate(path: "${path}${name}.shut") after got
    return (name: name, value: got.value)
}

flow all(names: list[str], path: str) -> (values: list[(name: str, value: str)?]) {
    made = each n in names concurrency 2 {
        item(name: n, path: path)
    }
    return (values: made.results)
}
"""


def setup(weft) -> str:
    (weft.folder / "ra.py").write_text(ACTIONS)
    (weft.folder / "bulk.flow").write_text(FLOW)
    for name in "abc":
        (weft.folder / f"v{name}").write_text("1")
    return str(weft.folder / "v")


def values(run: dict) -> list[str]:
    return [v["value"] if v else None for v in run["result"]["values"]]


def test_rerun_of_an_item_of_a_succeeded_bulk_run_refreshes_its_results_and_result(weft):
    path = setup(weft)
    rid, _ = weft.run("bulk.flow", "--flow", "all", "-i", 'names=["a","b","c"]', "-i", f"path={path}", code=0)
    (weft.folder / "vb").write_text("2")
    weft("rerun", rid, "made", "--item", "2", code=0)
    shown = weft.show(rid)
    assert shown["state"] == "succeeded" and values(shown) == ["1", "2", "1"]
    made = next(s for s in shown["steps"] if s["id"] == "made")
    assert [r["value"] for r in made["outputs"]["results"]] == ["1", "2", "1"]
    assert "made: results of item 2 refreshed" in weft("show", rid, code=0).stdout


def test_a_resumed_each_step_reads_again_the_items_re_run_meanwhile_from_another_process(weft, monkeypatch):
    path = setup(weft)
    (weft.folder / "vc.shut").write_text("x")  # item 3 fails: the bulk run pauses, items 1 and 2 ended
    monkeypatch.syspath_prepend(str(weft.folder))
    monkeypatch.chdir(weft.folder)
    with Client(weft.store) as client:
        rid = client.start(str(weft.folder / "bulk.flow"), "all", {"names": ["a", "b", "c"], "path": path}, hold=True)
        assert client.drive(rid).state == "paused"  # this process remembers items 1 and 2 ended with value 1
        (weft.folder / "va").write_text("2")
        weft("rerun", rid, "made", "--item", "1", code=0)  # another process
        (weft.folder / "vc.shut").unlink()
        client.resume(rid, hold=True)
        run = client.drive(rid)
    assert run.state == "succeeded"
    shown = json.loads(weft("show", rid, "--json", code=0).stdout)
    assert values(shown) == ["2", "1", "1"], shown["result"]
