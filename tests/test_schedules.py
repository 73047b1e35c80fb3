"""Delayed runs and schedules through the CLI, fired by real `weft worker` processes (some killed)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta

import pytest

from conftest import Output, Weft

pytestmark = pytest.mark.slow

FLOW = """\
flow tick(n: int = 1) -> (n: int) {
    a = std.echo(value: n)
    return (n: a.value)
}

flow slow(n: int = 1) {
    a = std.sleep(seconds: 1.5)
}
"""


@pytest.fixture
def weft(tmp_path) -> Weft:
    w = Weft(tmp_path)
    w.flow = str(tmp_path / "tick.flow")
    with open(w.flow, "w") as f:
        f.write(FLOW)
    return w


def worker(weft: Weft) -> Output:
    out = Output(weft.start("worker", stderr=subprocess.STDOUT))
    out.wait_for("serving")
    return out


def stop(w: Output, sig: int = signal.SIGTERM) -> None:
    w.proc.send_signal(sig)
    w.proc.wait(30)


def runs_of(weft: Weft, name: str) -> list[dict]:
    return json.loads(weft("list", "--schedule", name, "--limit", "1000", "--json", code=0).stdout)


def shown(weft: Weft, name: str) -> dict:
    return json.loads(weft("schedule", "show", name, "--json", code=0).stdout)


def test_every_slot_fires_exactly_once_with_two_workers_one_of_them_killed(weft):
    weft("schedule", "add", "tick", weft.flow, "--flow", "tick", "--every", "1s", "--overlap", "allow", code=0)
    a, b = worker(weft), worker(weft)
    time.sleep(5)
    stop(a, signal.SIGKILL)  # whatever it was doing: nothing it decided is half done
    time.sleep(5)
    weft("schedule", "pause", "tick", code=0)
    time.sleep(1.5)
    stop(b)
    runs = runs_of(weft, "tick")
    slots = sorted(r["schedule"]["slot"] for r in runs)
    assert len(slots) >= 8, slots
    assert len(set(slots)) == len(slots)  # no slot twice
    assert [round(s - slots[0]) for s in slots] == list(range(len(slots)))  # and none left out
    s = shown(weft, "tick")
    assert s["fired"] == len(runs) and s["paused"] is True
    fired = [e["slot"] for e in s["history"] if e["what"] == "fire"]
    assert sorted(fired) == slots[-len(fired) :]
    done = worker(weft)  # the killed worker's runs are recovered and finish
    try:
        end = time.monotonic() + 30
        while any(r["state"] != "succeeded" for r in runs_of(weft, "tick")):
            assert time.monotonic() < end, [r["state"] for r in runs_of(weft, "tick")]
            time.sleep(0.2)
    finally:
        stop(done)


def test_slots_missed_while_no_worker_served_fire_within_the_catch_up_window(weft):
    weft(
        "schedule", "add", "tick", weft.flow, "--flow", "tick", "--every", "1s", "--overlap", "allow",
        "--catchup", "3s", code=0,
    )  # fmt: skip
    w = worker(weft)
    time.sleep(2.5)
    stop(w)
    time.sleep(5)
    w = worker(weft)
    time.sleep(2)
    weft("schedule", "pause", "tick", code=0)
    stop(w)
    s = shown(weft, "tick")
    history = [(e["slot"], e["what"]) for e in s["history"] if e["what"] in ("fire", "miss")]
    slots = [slot for slot, _ in history]
    assert len(set(slots)) == len(slots) and [round(x - slots[0]) for x in slots] == list(range(len(slots)))
    missed = [slot for slot, what in history if what == "miss"]
    assert 1 <= len(missed) <= 4, history  # 5 s down, 3 s (and a second's slack) caught up
    later = [slot for slot, what in history if what == "fire" and slot > missed[0]]
    assert later and min(later) == missed[-1] + 1  # the newer slots of the gap fired; the older ones were missed
    fired = {r["schedule"]["slot"] for r in runs_of(weft, "tick")}
    assert fired == {slot for slot, what in history if what == "fire"} and not fired & set(missed)


def test_skip_overlap_skips_slots_while_a_run_is_going_and_records_it(weft):
    weft("schedule", "add", "slow", weft.flow, "--flow", "slow", "--every", "1s", code=0)
    w = worker(weft)
    time.sleep(4.5)
    weft("schedule", "pause", "slow", code=0)
    stop(w)
    s = shown(weft, "slow")
    whats = [e["what"] for e in s["history"]]
    assert "fire" in whats and "skip" in whats
    assert all(e["note"] == "the run before it was still going" for e in s["history"] if e["what"] == "skip")


def test_a_run_that_cannot_start_before_its_deadline_fails_saying_so(weft):
    rid = weft("run", weft.flow, "--flow", "tick", "--detach", "--in", "1s", "--start-before", "1s", code=0)
    rid = rid.stdout.split()[1]
    assert weft.show(rid)["state"] == "scheduled"
    time.sleep(2.5)
    weft("worker", "--once", code=0)
    run = weft.show(rid)
    assert run["state"] == "failed" and "missed its start deadline" in run["error"]
    assert all(s["state"] == "pending" and s["attempts"] == 0 for s in run["steps"])  # nothing ran
    for args, message in (  # a deadline was stored unbounded (and `weft show` of the run then failed, exit 70)
        (("--in", "1h", "--start-before", "100000000000000000000d"), "start_before must be more than 0 and at most"),
        (("--at", "0001-01-01"), "--at must lie from 1970 to the year 9999, not '0001-01-01'"),  # (naive: exit 70)
    ):
        refused = weft("run", weft.flow, "--flow", "tick", "--detach", *args, code=2)
        assert message in refused.stderr, refused.stderr
    assert [r["id"] for r in json.loads(weft("list", "--json", code=0).stdout)] == [rid]


def test_a_start_time_in_the_past_starts_at_once_and_a_future_one_waits_in_the_foreground(weft):
    past = (datetime.now() - timedelta(hours=1)).isoformat(timespec="seconds")
    done = weft("run", weft.flow, "--flow", "tick", "--at", past, code=0)
    assert "succeeded" in done.stdout
    t0 = time.monotonic()
    done = weft("run", weft.flow, "--flow", "tick", "--in", "2s", code=0)
    assert time.monotonic() - t0 >= 2 and "scheduled to start at" in done.stdout and "succeeded" in done.stdout


def test_a_scheduled_run_is_listed_cancellable_and_refuses_resume(weft):
    rid = weft("run", weft.flow, "--flow", "tick", "--detach", "--in", "1h", code=0).stdout.split()[1]
    listed = json.loads(weft("list", "--state", "scheduled", "--json", code=0).stdout)
    assert [r["id"] for r in listed] == [rid] and listed[0]["due"] > time.time() + 3500
    refused = weft("resume", rid, code=2)
    assert "is scheduled and has not started" in refused.stderr
    weft("cancel", rid, code=0)
    assert weft.show(rid)["state"] == "cancelled"


def test_bad_schedules_are_refused_naming_what_is_wrong(weft):
    cases = [
        (("--cron", "61 * * * *"), "not a cron line"),
        (("--every", "0s"), "--every must be longer than zero"),
        (("--every", "1m", "--tz", "Mars/Olympus"), "no time zone 'Mars/Olympus'"),
        (("--every", "1m", "--max-runs", "0"), "max_runs must be at least 1"),
        (("--every", "1m", "-i", "n=x"), "input 'n': 'x' is not an int"),
        # each of these was stored and then broke `weft schedule list` for good (exit 70), or failed so itself:
        (("--every", "100000000000000000000d"), "every must be from 1 second to 366 days, not 8.64e+24 seconds"),
        (("--every", "0.001s"), "every must be from 1 second to 366 days, not 0.001 seconds (a worker looks once"),
        (("--every", "1h", "--jitter", "2d"), "jitter must be from 0 to 1 day, not 172800 seconds"),
        (("--every", "1h", "--catchup", "400d"), "catchup must be from 0 to 366 days"),
        (("--cron", "0 0 30 2 *"), "a cron line that never fires: '0 0 30 2 *'"),
        (("--cron", "0 * * * *", "--start", "9999-12-31T23:30"), "the schedule has no slot before its until"),
        (("--every", "1h", "--start", "0001-01-01"), "--start must lie from 1970 to the year 9999, not '0001-01-01'"),
    ]
    for args, message in cases:
        done = weft("schedule", "add", "bad", weft.flow, "--flow", "tick", *args, code=2)
        assert message in done.stderr, (args, done.stderr)
    weft("schedule", "add", "ok", weft.flow, "--flow", "tick", "--every", "1h", code=0)
    assert "exists already" in weft("schedule", "add", "ok", weft.flow, "--flow", "tick", "--every", "1h").stderr
    assert "no schedule 'nope'" in weft("schedule", "show", "nope", code=2).stderr
    for command in (
        "show",
        "pause",
        "trigger",
        "remove",
    ):  # the store was blamed: "cannot read store ...: MDB_BAD_VALSIZE"
        assert "no schedule ''" in weft("schedule", command, "", code=2).stderr
    rid = weft("schedule", "trigger", "ok", code=0).stdout.split()[1]
    assert weft.show(rid)["schedule"]["name"] == "ok"
    weft("schedule", "remove", "ok", code=0)
    assert "no schedules" in weft("schedule", "list", code=0).stdout
