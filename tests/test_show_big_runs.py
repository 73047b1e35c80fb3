"""`weft show` of a big run: a summary by phase and state and a page of steps (failed, running and
suspended ones first) and of history; `--steps N|all` and `--json` show more. Through the CLI and the
Client on an LMDB store, whose plans of more than a chunk of steps are stored in chunks."""

from __future__ import annotations

import json
import textwrap

import pytest

from weft.client import Client

STEPS = 600  # more than a chunk of the stored plan (lmdb/plans.py CHUNK)

ACTIONS = """
from weft import action


@action(idempotent=True)
def noop() -> None:
    return None


@action
def boom() -> None:
    raise RuntimeError("no luck")
"""


@pytest.fixture
def big(weft) -> tuple[str, str]:
    """A paused run of STEPS + 1 steps: `broken` (the last, after all others) failed, the others succeeded;
    and its flow file."""
    lines = [f"    s{i} = a.noop()" for i in range(STEPS)]
    lines.append(f"    broken = a.boom() after {', '.join(f's{i}' for i in range(STEPS))}")
    (weft.folder / "acts.py").write_text(textwrap.dedent(ACTIONS))
    (weft.folder / "big.flow").write_text("use acts as a\n\nflow big() {\n" + "\n".join(lines) + "\n}\n")
    run_id, _ = weft.run("big.flow", code=3)
    return run_id, str(weft.folder / "big.flow")


@pytest.mark.slow
def test_show_summarises_a_big_run_and_pages_its_steps_and_history(weft, big):
    run_id, _ = big
    text = weft("show", run_id, code=0).stdout
    lines = text.splitlines()
    assert f"steps    {STEPS + 1} in all: run phase: 1 failed, {STEPS} succeeded" in lines
    rows = lines[lines.index(next(x for x in lines if x.startswith("STEP "))) + 1 :]
    assert rows[0].split()[:3] == ["broken", "run", "failed"]  # the failed step first, then plan order
    assert [r.split()[0] for r in rows[1:50]] == [f"s{i}" for i in range(49)]
    assert rows[50] == f"... {STEPS + 1 - 50} more steps (weft show {run_id} --steps all prints every one)"
    events = len(weft.show(run_id)["history"])
    history = lines.index(f"history (the last 50 of {events} events; --steps all prints all)")
    assert len(lines) - history - 1 == 50 and lines[-1].split()[0] == str(events)
    assert f"weft show {run_id} broken" in text  # the failed steps section still names it

    every = weft("show", run_id, "--steps", "all", code=0).stdout.splitlines()
    assert "steps    " not in "\n".join(every) and "history" in every
    assert sum(1 for x in every if x.split()[1:2] == ["run"]) == STEPS + 1
    assert len(every) - every.index("history") - 1 == events

    few = weft("show", run_id, "--steps", "3", code=0).stdout.splitlines()
    assert few[few.index(next(x for x in few if x.startswith("STEP "))) + 4].startswith(f"... {STEPS - 2} more")
    assert few[-4].startswith("history (the last 3 of")

    bad = weft("show", run_id, "--steps", "many", code=2)
    assert bad.stderr == "weft: error: --steps must be a number from 0 to 1,000,000 or 'all', not 'many'\n"
    bad = weft("show", run_id, "--steps", "²", code=2)  # a digit to str.isdigit, not to int()
    assert bad.stderr == "weft: error: --steps must be a number from 0 to 1,000,000 or 'all', not '²'\n"


@pytest.mark.slow
def test_json_is_complete_unless_paged_and_the_client_reads_pages(weft, big):
    run_id, flow = big
    whole = weft.show(run_id)
    assert len(whole["steps"]) == whole["steps_total"] == STEPS + 1
    assert whole["counts"] == {"run": {"failed": 1, "succeeded": STEPS}}
    assert len(whole["history"]) == whole["history_total"]
    paged = json.loads(weft("show", run_id, "--json", "--steps", "10", code=0).stdout)
    assert [s["id"] for s in paged["steps"]] == ["broken", *(f"s{i}" for i in range(9))]
    assert paged["counts"] == whole["counts"] and paged["actions"] == whole["actions"]
    assert paged["history"] == whole["history"][-10:]

    with Client(weft.store) as client:
        page = client.get(run_id, steps=2, history=0)
        assert [s.id for s in page.steps] == ["broken", "s0"] and page.history == ()
        assert page.steps[0] == client.get(run_id).step("broken")
        assert "skip" in page.actions and page.steps_total == STEPS + 1
        stored, compiled = client.diagram(run_id).plan, client.compile(flow)  # a chunked plan reads back whole
        assert stored == {**compiled, "search_path": stored["search_path"]}  # (found from another folder here)
    assert weft("doctor", code=0).stdout.endswith("is sound\n")
    weft("skip", run_id, "broken", code=0)
    assert weft.show(run_id)["counts"] == {"run": {"skipped": 1, "succeeded": STEPS}}


@pytest.mark.slow
def test_a_page_read_from_the_stores_tally_says_what_counting_every_step_says(weft):
    lines = [f"    s{i} = a.noop()" for i in range(STEPS)]
    (weft.folder / "acts.py").write_text(textwrap.dedent(ACTIONS))
    (weft.folder / "ok.flow").write_text(
        "use acts as a\n\nflow ok() {\n" + "\n".join(lines) + '\n    finalize {\n        std.log(message: "done")\n'
        "        std.echo(value: 1)\n    }\n}\n"
    )
    run_id, _ = weft.run("ok.flow", code=0)
    tallied = weft("show", run_id, code=0).stdout
    assert f"steps    {STEPS + 2} in all: run phase: {STEPS} succeeded; finalize phase: 2 succeeded" in tallied
    paged = json.loads(weft("show", run_id, "--json", "--steps", "3", code=0).stdout)
    whole = weft.show(run_id)
    assert paged["counts"] == whole["counts"] == {"run": {"succeeded": STEPS}, "finalize": {"succeeded": 2}}
    assert [s["id"] for s in paged["steps"]] == ["s0", "s1", "s2"] and paged["steps_total"] == STEPS + 2

    from weft.runtime.stores.lmdb.store import Store

    with Store(weft.store) as store:  # a tally that does not add up is not used: the steps are counted
        right = store.write(lambda t: t.get("tallies", run_id.encode()))
        store.write(lambda t: t.put("tallies", run_id.encode(), {"succeeded": 3}))
    assert weft("show", run_id, code=0).stdout == tallied
    assert f"stale tally tallies:{run_id}" in weft("doctor", code=1).stdout
    assert "anew from its run's step records" in weft("doctor", "--repair", code=0).stdout
    with Store(weft.store) as store:  # counted again, as the writes had kept it
        assert store.write(lambda t: t.get("tallies", run_id.encode())) == right == {"succeeded": STEPS + 2}
    with Store(weft.store) as store:  # nor is one missing (a run stored before tallies were kept)
        store.write(lambda t: t.delete("tallies", run_id.encode()))
    assert weft("show", run_id, code=0).stdout == tallied
