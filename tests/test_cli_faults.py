"""Faults around `weft` commands, as real processes: owners that die, racing signals, lost output, Ctrl-C, hostile input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import Weft, read_until, run_id

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "faults.flow")
CLI_FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "cli.flow")


class Faults(Weft):
    """`weft` commands that must succeed unless told otherwise."""

    def __call__(self, *args: str, code: int | None = 0, **checks) -> subprocess.CompletedProcess:
        return super().__call__(*args, code=code, **checks)

    def running(self, *args: str) -> tuple[subprocess.Popen, str]:
        """A `weft run` in the background, once it has printed its run id."""
        proc = self.start("run", *args)
        return proc, run_id(proc.stdout.readline())


@pytest.fixture
def weft(tmp_path) -> Faults:
    return Faults(tmp_path)


def one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("weft: error: ") and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def until(check, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
    return found


# -- item 3: a run whose owner died ---------------------------------------------------------


@pytest.mark.slow
def test_cancel_of_a_run_whose_owner_died_takes_it_over_cancels_it_and_frees_its_lock(weft):
    effects = weft.tmp / "effects"
    owner, rid = weft.running(FLOW, "--flow", "held", "-i", "seconds=30", "-i", f"path={effects}")
    read_until(owner, " s running")
    live = json.loads(weft("list", "--json").stdout)[0]
    assert (live["state"], live["orphaned"], live["owner"]["pid"]) == ("running", False, owner.pid)
    assert "owner gone" not in weft("list").stdout
    owner.kill()
    owner.wait()

    listed = weft("list").stdout.splitlines()[1]
    assert listed.startswith(rid) and "running (owner gone: resume or cancel)" in listed
    gone = json.loads(weft("list", "--json").stdout)[0]
    assert (gone["state"], gone["orphaned"], gone["owner"]["alive"]) == ("running", True, False)
    assert "state    running (owner gone: resume or cancel)" in weft("show", rid).stdout
    assert weft.show(rid)["orphaned"] is True

    done = weft("cancel", rid)
    assert f"run {rid}: no live process drives it; cancelling it here" in done.stdout
    assert done.stdout.splitlines()[-1] == f"run {rid} cancelled"
    shown = weft.show(rid)
    assert shown["state"] == "cancelled" and shown["owner"] is None and not shown["orphaned"]
    assert [s["state"] for s in shown["steps"]] == ["cancelled", "cancelled"] and not effects.exists()
    assert "taken over from pid" in weft("show", rid).stdout
    weft("run", FLOW, "--flow", "held", "-i", "seconds=0", "-i", f"path={effects}")  # the lock is free
    one_line_error(weft("cancel", rid, code=2), "was cancelled; it cannot be cancelled")


# -- item 4: racing signals ------------------------------------------------------------------

ROUNDS = 20


def _waits_flow(tmp_path, n: int) -> str:
    path = tmp_path / "waits.flow"
    body = "\n".join(f"    s{k} = wait s{k}(who: str) timeout 1h" for k in range(n))
    path.write_text(f"flow waits() {{\n{body}\n}}\n")
    return str(path)


def _race(weft, rid: str, k: int, last: bool) -> str:
    """Two `weft signal` processes at once to step s<k>: exactly one is delivered; returns the winner's payload."""
    procs = {who: weft.start("signal", rid, f"s{k}", f"who={who}") for who in (f"a{k}", f"b{k}")}
    done = {who: (p.wait(60), p.stdout.read(), p.stderr.read()) for who, p in procs.items()}
    winners = [who for who, (code, _, _) in done.items() if code == 0]
    assert len(winners) == 1, done
    (loser,) = set(done) - set(winners)
    code, _, err = done[loser]
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, done
    assert f"step s{k} of run {rid} already got signal 's{k}'; this one was not delivered" in err or (
        last and f"already got signal 's{k}')" in err  # the winner of the last race may have ended the run
    )
    return winners[0]


def _suspended(weft, rid: str, n: int) -> bool:
    """Whether all `n` steps of the run are suspended, read from the store (polled: no process each time)."""
    return [s["state"] for s in weft.steps(rid).values()] == ["suspended"] * n


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, rounds",
    [  # ROUNDS races with a live owner, in two tests that run in parallel; 8 with workers, 8 after a take-over
        pytest.param("live owner", ROUNDS // 2, id="live owner 1"),
        pytest.param("live owner", ROUNDS - ROUNDS // 2, id="live owner 2"),
        pytest.param("workers", 8, id="workers"),
        pytest.param("taken over", 8, id="taken over"),
    ],
)
def test_of_two_concurrent_signals_the_first_wins_and_the_other_is_refused(weft, mode, rounds):
    flow = _waits_flow(weft.tmp, rounds)
    if mode == "workers":
        rid = weft("run", flow, "--detach").stdout.split()[1]
        weft("worker", "--once")
    else:
        owner, rid = weft.running(flow)
    until(lambda: _suspended(weft, rid, rounds))
    if mode == "taken over":
        owner.kill()
        owner.wait()
    winners = [_race(weft, rid, k, k == rounds - 1) for k in range(rounds)]
    if mode == "live owner":
        assert owner.wait(30) == 0
    elif mode == "workers":
        weft("worker", "--once")
    shown = weft.show(rid)
    assert shown["state"] == "succeeded"
    assert [s["outputs"] for s in shown["steps"]] == [{"who": w} for w in winners]


# -- item 5: lost output and Ctrl-C ------------------------------------------------------------


def test_a_closed_stdout_does_not_stop_the_run(weft):
    effects = weft.tmp / "effects"
    proc, rid = weft.running(FLOW, "--flow", "held", "-i", "seconds=1", "-i", f"path={effects}")
    proc.stdout.close()  # as `weft run ... | head -1` does after the first line
    assert proc.wait(30) == 0
    assert proc.stderr.read() == ""
    shown = weft.show(rid)
    assert shown["state"] == "succeeded" and shown["owner"] is None
    assert effects.read_text() == f"{rid} after 1\n"


def test_a_pipe_to_head_gets_the_first_line_and_the_run_still_succeeds(weft):
    effects = weft.tmp / "effects"
    cmd = " ".join(weft.command("run", FLOW, "--flow", "chain", "-i", f"path={effects}"))
    done = subprocess.run(
        ["bash", "-c", f"{cmd} | head -1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        env=weft.env,
        cwd=weft.tmp,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done
    rid = done.stdout.split()[1]
    assert weft.show(rid)["state"] == "succeeded" and effects.read_text() == f"{rid} d 1\n"


def test_ctrl_c_stops_driving_and_says_how_to_resume(weft):
    effects = weft.tmp / "effects"
    proc, rid = weft.running(FLOW, "--flow", "held", "-i", "seconds=3", "-i", f"path={effects}")
    read_until(proc, " s running")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert f"weft: interrupted: run {rid} stopped here" in err and f"weft resume {rid} goes on" in err
    assert "running (owner gone: resume or cancel)" in weft("list").stdout
    done = weft("resume", rid)
    assert done.stdout.splitlines()[-1].startswith(f"run {rid} succeeded")
    assert effects.read_text() == f"{rid} after 1\n"


# -- item 16: hostile inputs ------------------------------------------------------------------


def test_deeply_nested_inputs_are_refused_in_one_line(weft):
    deep = "[" * 1000 + "]" * 1000
    one_line_error(weft("run", FLOW, "--flow", "deep", "-i", f"value={deep}", code=2), "nests deeper than 64 levels")
    (weft.tmp / "deep.json").write_text(json.dumps({"value": json.loads("[" * 500 + "]" * 500)}))
    one_line_error(weft("run", FLOW, "--flow", "deep", "--inputs", "deep.json", code=2), "nests deeper than 64")
    (weft.tmp / "deeper.json").write_text('{"value": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_error(weft("run", FLOW, "--flow", "deep", "--inputs", "deeper.json", code=2), "nests deeper than 64")
    ok = "[" * 64 + "]" * 64
    weft("run", FLOW, "--flow", "deep", "-i", f"value={ok}", "-i", 'who=["[[[[["]')
    assert weft("list", "--json").stdout.count('"id"') == 1


def test_an_endless_inputs_file_is_read_in_bounded_chunks(weft):
    started = time.monotonic()
    done = weft("run", FLOW, "--flow", "deep", "--inputs", "/dev/zero", code=2)
    one_line_error(done, "/dev/zero is larger than 16 MiB, the most inputs may take")
    assert time.monotonic() - started < 10


def test_filters_pages_and_names_out_of_range_are_refused_naming_the_limit(weft):
    first = weft("run", FLOW, "--flow", "deep", "-i", "value=1").stdout.split()[1]
    for option in ("--flow", "--tag", "--user", "--lock", "--label", "--state"):
        one_line_error(weft("list", option, b"ab\xffc", code=2), "is not valid UTF-8 text")
    one_line_error(weft("run", FLOW, "--flow", "deep", "-i", "value=1", "--user", b"\xff\xfe", code=2), "user")
    one_line_error(weft("list", "--limit", str(10**23), code=2), "limit must be from 1 to 1,000,000, not")
    one_line_error(weft("list", "--offset", str(10**23), code=2), "offset must be from 0 to 1,000,000, not")
    one_line_error(weft("list", "--lock", "x" * 600, code=2), "lock must be 1 to 200 bytes of UTF-8 text, not 600")
    one_line_error(
        weft("run", FLOW, "--flow", "deep", "-i", "value=1", "--user", "u" * 500, code=2),
        "user must be 1 to 200 bytes of UTF-8 text, not 500",
    )
    one_line_error(
        weft("run", FLOW, "--flow", "deep", "-i", "value=1", "-i", "who=" + "é" * 300, code=2),
        "lock must be 1 to 200 bytes of UTF-8 text, not 605",
    )
    assert [r["id"] for r in json.loads(weft("list", "--json").stdout)] == [first]
    weft("run", FLOW, "--flow", "deep", "-i", "value=1", "-i", "who=" + "w" * 195)  # "lock:" and 195: at the limit


# -- item 21: what cancel and rollback leave ---------------------------------------------------


def test_a_step_stopped_by_cancel_is_cancelled_and_a_rolled_back_run_has_no_result(weft):
    owner, rid = weft.running(FLOW, "--flow", "stoppable")
    read_until(owner, " s running")
    weft("cancel", rid)
    assert owner.wait(30) == 1
    assert " s cancelled (stopped by cancel)" in owner.stdout.read()
    shown = weft.show(rid)
    assert (shown["state"], shown["steps"][0]["state"]) == ("cancelled", "cancelled")

    effects, marker = weft.tmp / "effects", weft.tmp / "marker"
    done = weft("run", CLI_FLOW, "--flow", "undoable", "-i", f"path={effects}", "-i", f"marker={marker}")
    rid = done.stdout.split()[1]
    weft("rollback", rid, code=2)  # `bad` has no undo
    weft("rollback", rid, "--force")
    shown = weft.show(rid)
    assert (shown["state"], shown["rolled_back"], shown["result"], shown["progress"]) == ("failed", True, None, 1.0)
    text = weft("show", rid).stdout
    assert "state    failed (rolled back)   progress 100%" in text and "\nresult" not in text
    assert [s["state"] for s in shown["steps"]] == ["undone", "undone", "succeeded"]
