"""Run metadata, `weft list`, `weft prune`, locks and bulk sub-runs, as real `weft` processes on real stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from conftest import Weft
from runtime_support.checks import index_problems

from weft.runtime.stores.lmdb.store import Store

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "catalog.flow")
SVG = "{http://www.w3.org/2000/svg}"


class Catalog(Weft):
    """`weft` commands that must succeed unless told otherwise, and runs of the catalog flows."""

    def __call__(self, *args: str, code: int | None = 0, **checks) -> subprocess.CompletedProcess:
        return super().__call__(*args, code=code, **checks)

    def run(self, flow: str, *inputs: str, user: str = "tester", code: int = 0) -> str:
        args = [a for i in inputs for a in ("-i", i)]
        return super().run(FLOW, "--flow", flow, "--user", user, *args, code=code)[0]

    def ids(self, *args: str) -> list[str]:
        return [r["id"] for r in json.loads(self("list", "--json", *args).stdout)]


@pytest.fixture
def weft(tmp_path) -> Catalog:
    return Catalog(tmp_path)


def error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2 and done.stderr.startswith("weft: error: ") and done.stderr.count("\n") == 1
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_runs_record_their_metadata_and_list_finds_them_by_any_of_it(weft, tmp_path):
    (tmp_path / "m-b").write_text("x")
    a = weft.run("host", "name=a", user="alice")
    b = weft.run("host", "name=b", f"marker={tmp_path}/m-", user="bob", code=3)
    fleet = weft.run("fleet", 'names=["c","d"]', user="carol")
    undone = weft.run("undoable", f"path={tmp_path}/fx", f"marker={tmp_path}/m-b", user="dave", code=3)
    weft("rollback", undone)
    listed = {r["id"]: r for r in json.loads(weft("list", "--all", "--json").stdout)}
    assert fleet in listed and not set(listed) <= {r["id"] for r in json.loads(weft("list", "--json").stdout)}
    c, d = weft.ids("--parent", fleet[:12].lower(), "--reverse")
    assert listed[fleet]["label"] == 'fleet of ["c", "d"]' and listed[fleet]["tags"] == ["hosts", "bulk"]
    assert (listed[fleet]["outcome"], listed[fleet]["result"], listed[fleet]["locks"]) == (
        "succeeded",
        {"done": 2},
        ["fleet"],
    )
    assert listed[c]["parent"] == {"run": fleet, "step": "runs", "index": 0} and listed[c]["user"] == "carol"
    assert listed[c]["label"] == "item c" and listed[d]["parent"]["index"] == 1
    assert listed[undone]["outcome"] == "rolled back" and listed[b]["outcome"] is None
    assert all(r["created"] <= r["started"] <= r["ended"] for r in listed.values() if r["ended"])
    assert listed[b]["ended"] is None and listed[a]["user"] == "alice"

    assert weft.ids("--all") == [undone, d, c, fleet, b, a]
    assert weft.ids() == [undone, fleet, b, a]  # sub-runs only with --all or --parent
    assert weft.ids("--user", "bob") == [b]
    assert weft.ids("--label", "HOST") == [b, a]
    assert weft.ids("--tag", "bulk") == [fleet]
    assert weft.ids("--flow", "host", "--state", "succeeded") == [a]
    assert weft.ids("--result", "rolled-back") == weft.ids("--state", "failed") == [undone]
    assert weft.ids("--result", "succeeded", "--sort=-started", "--all") == [a, fleet, c, d]
    assert weft.ids("--lock", "host:b") == [b] and weft.ids("--lock", "fleet") == []
    assert weft.ids("--since", "1h") == weft.ids("--before", str(date.today() + timedelta(days=2))) == weft.ids()
    assert weft.ids("--before", "1h") == [] and weft.ids("--since", "2030-01-01T00:00") == []
    assert weft.ids("--all", "--sort", "user") == [a, b, fleet, c, d, undone]
    assert weft.ids("--all", "--sort", "user", "--reverse") == [undone, d, c, fleet, b, a]
    assert weft.ids("--all", "--sort", "label", "--limit", "2") == [fleet, a]
    assert weft.ids("--all", "--sort", "state") == [undone, b, a, fleet, c, d]
    assert weft.ids("--all", "--sort", "ended")[-1] == b and weft.ids("--all", "--sort", "flow")[0] == fleet
    paged = weft("list", "--all", "--json", "--limit", "2", "--offset", "1")
    assert [r["id"] for r in json.loads(paged.stdout)] == [d, c]
    assert paged.stderr == "more runs match: --offset 3 shows the next 2\n"
    table = weft("list", "--all", "--user", "carol").stdout.splitlines()
    assert table[0].split() == ["RUN", "STATE", "FLOW", "USER", "PROGRESS", "STARTED", "TOOK", "LABEL"]
    assert [line.split()[0] for line in table[1:]] == [d, c, fleet] and " carol " in table[1]

    error(weft("list", "--since", "yesterday", code=None), "since takes a duration (30m, 2h, 7d) or an ISO date")
    error(weft("list", "--result", "won", code=None), "no result 'won'")
    error(weft("list", "--sort", "size", code=None), "cannot sort by 'size'")
    error(weft("list", "--parent", "ZZZZ", code=None), "no run 'ZZZZ'")


def test_a_lock_refuses_a_second_run_until_the_holder_ends_but_not_its_sub_runs(weft, tmp_path):
    (tmp_path / "m-x").write_text("x")
    x = weft.run("host", "name=x", f"marker={tmp_path}/m-", code=3)
    refused = weft("run", FLOW, "--flow", "host", "-i", "name=x", code=2)
    error(refused, f"lock 'host:x' is held by run {x} (host x, paused); nothing was started")
    assert weft.ids() == [x] and weft.ids("--lock", "host:x") == [x]
    (tmp_path / "m-x").unlink()
    weft("resume", x)
    assert weft.ids("--lock", "host:x") == []
    again = weft.run("host", "name=x")

    (tmp_path / "m-y").write_text("x")
    y = weft.run("host", "name=y", f"marker={tmp_path}/m-", code=3)
    weft("cancel", y)
    assert weft.ids("--lock", "host:y") == []
    weft.run("host", "name=y")

    top = weft.run("fleets", 'groups=[["p","q"],["r"]]')  # "fleet" is held by the run, its sub-runs and theirs
    middle = weft.ids("--parent", top, "--reverse")
    below = [rid for m in middle for rid in weft.ids("--parent", m)]
    assert len(middle) == 2 and len(below) == 3
    assert len(weft.ids("--result", "succeeded", "--since", "1m", "--flow", "fleet.runs", "--all")) == 3
    assert set(weft.ids("--result", "succeeded", "--limit", "100", "--all")) >= {top, *middle, *below}
    assert top in weft.ids("--result", "succeeded") and not set(middle) & set(weft.ids("--result", "succeeded"))

    (tmp_path / "m-s").write_text("x")
    fleet = weft.run("fleet", 'names=["s"]', f"marker={tmp_path}/m-", code=3)
    error(weft("run", FLOW, "--flow", "item", "-i", "name=t", code=2), f"lock 'fleet' is held by run {fleet}")
    assert weft.ids("--lock", "fleet") == [fleet] and again in weft.ids("--flow", "host")


def test_bulk_parents_count_list_show_and_draw_their_sub_runs(weft, tmp_path):
    (tmp_path / "m-f").write_text("x")
    parent = weft.run("fleet", 'names=["e","f","g"]', f"marker={tmp_path}/m-", code=3)
    children = weft.ids("--parent", parent, "--reverse")
    listed = json.loads(weft("list", "--parent", parent, "--json", "--reverse").stdout)
    assert [(r["label"], r["state"]) for r in listed] == [
        ("item e", "succeeded"),
        ("item f", "paused"),
        ("item g", "succeeded"),
    ]
    shown = weft("show", parent).stdout
    assert "sub-runs of runs: 1 paused, 2 succeeded (2 done, 1 failed, 3 in all)" in shown
    assert all(re.search(rf"^\s+{i + 1}  {rid}  \w+", shown, re.M) for i, rid in enumerate(children))
    step = json.loads(weft("show", parent, "--json").stdout)["steps"][0]
    assert step["sub_run_progress"] == {"done": 2, "failed": 1, "total": 3}
    assert [s["id"] for s in step["sub_runs"]] == children
    assert drawn_counts(weft, parent, tmp_path) == "✓ 2 ◷ 1"
    (tmp_path / "m-f").unlink()
    weft("resume", parent)
    assert drawn_counts(weft, parent, tmp_path) == "✓ 3"
    assert "(3 done, 0 failed, 3 in all)" in weft("show", parent).stdout
    error(weft("graph", parent, "--flow", "other", code=None), "--flow is for a .flow file")  # (ignored before)


def drawn_counts(weft, run: str, tmp_path) -> str:
    """The counts line drawn on the `each` step's node of `weft graph RUN -o x.svg`."""
    out = tmp_path / "x.svg"
    weft("graph", run, "-o", str(out))
    for g in ET.parse(out).getroot().iter(f"{SVG}g"):
        if g.get("class") == "node" and g.find(f"{SVG}title").text == "runs":
            return [t.text for t in g.iter(f"{SVG}text")][-1]
    raise AssertionError("no node for step 'runs'")


def test_prune_removes_old_ended_runs_their_sub_runs_and_every_key(weft, tmp_path):
    (tmp_path / "m-b").write_text("x")
    a = weft.run("host", "name=a")
    b = weft.run("host", "name=b", f"marker={tmp_path}/m-", code=3)
    fleet = weft.run("fleet", 'names=["c","d"]')
    undone = weft.run("undoable", f"path={tmp_path}/fx", f"marker={tmp_path}/m-b", code=3)
    weft("rollback", undone)
    assert weft("prune", "--older-than", "30d").stdout.startswith("removed 0 runs that ended before ")
    error(weft("prune", "--older-than", "0s", "--state", "paused", code=None), "prune removes ended runs only")
    for batch in ("0", "-5"):  # an internal error (exit 70); a false reason for deleting nothing
        error(
            weft("prune", "--older-than", "0s", "--batch", batch, code=None),
            f"batch must be from 1 to 1,000,000, not {batch}",
        )
    done = weft("prune", "--older-than", "0s", "--state", "succeeded").stdout
    assert done.startswith("removed 4 runs (2 of them sub-runs) that ended before ")
    assert weft.ids() == [undone, b]
    assert weft("prune", "--older-than", "0s").stdout.startswith("removed 1 run that ended before ")
    assert weft.ids() == [b] and weft.ids("--lock", "host:b") == [b]
    with Store(weft.store) as store:
        assert index_problems(store) == []
        with store.read() as t:
            for db in ("runs", "plans", "steps", "events", "requests", "leases"):
                assert {k[:26].decode() for k in t.keys(db, b"") if not k.startswith(b"lock\0")} <= {b}, db
            assert {k.decode() for k in t.keys("leases", b"lock\0")} == {"lock\0host:b"}
    for gone in (a, fleet):
        error(weft("show", gone, code=None), f"no run '{gone}'")
