"""`weft run/list/show/resume/skip/cancel/rollback/signal` as real processes: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess

from conftest import read_until, run_id

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "cli.flow")
LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2
    assert done.stderr.startswith("weft: error: ") and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr


def test_run_prints_the_id_then_each_transition_then_the_result(weft):
    done = weft("run", FLOW, "--flow", "basic", "-i", "n=1")
    assert done.returncode == 0
    rid = run_id(done.stdout)
    lines = done.stdout.splitlines()
    assert any(LINE.match(x) and x.endswith(" a running") for x in lines)
    assert any(re.search(r" b succeeded \(\d+\.\ds\)$", x) for x in lines)
    assert lines[-2].startswith(f"run {rid} succeeded in ")
    assert lines[-1] == 'result: {"total": 12}'
    shown = json.loads(weft("show", rid[:10], "--json").stdout)
    assert shown["state"] == "succeeded" and shown["label"] == "basic hi" and shown["inputs"] == {"n": 1, "word": "hi"}
    assert [s["state"] for s in shown["steps"]] == ["succeeded", "succeeded"]
    assert [h["seq"] for h in shown["history"]] == list(range(1, len(shown["history"]) + 1))


def test_bad_inputs_stop_before_anything_is_stored(weft, tmp_path):
    one_line_error(weft("run", FLOW, "--flow", "basic"), "missing input 'n' (int)", "nothing was run")
    one_line_error(weft("run", FLOW, "--flow", "basic", "-i", "nn=1"), "unknown input 'nn' (did you mean 'n'?)")
    one_line_error(weft("run", FLOW, "--flow", "basic", "-i", "n=abc"), "input 'n': 'abc' is not an int")
    one_line_error(weft("run", FLOW, "--flow", "basic", "-i", "n=18446744073709551616"), "cannot be stored")
    one_line_error(weft("run", FLOW, "--flow", "nope", "-i", "n=1"), "no flow named 'nope'")
    (tmp_path / "in.json").write_text('{"n": "x"}')
    one_line_error(weft("run", FLOW, "--flow", "basic", "--inputs", "in.json"), "input n: expected int")
    assert not (tmp_path / "store").exists()
    (tmp_path / "in.json").write_text('{"n": 5, "word": "file"}')
    done = weft("run", FLOW, "--flow", "basic", "--inputs", "in.json", "-i", "word=flag")
    assert done.stdout.splitlines()[-1] == 'result: {"total": 16}'
    assert json.loads(weft("list", "--json").stdout)[0]["label"] == "basic flag"


def test_compile_errors_print_diagnostics_and_exit_2(weft, tmp_path):
    bad = tmp_path / "bad.flow"
    bad.write_text("flow f() {\n    a = nothing.here()\n}\n")
    done = weft("run", str(bad))
    assert done.returncode == 2
    assert re.search(r"bad\.flow:2:\d+: error\[E\d+\]", done.stderr) and "nothing was run" in done.stderr


def test_pause_show_resume(weft, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("x")
    done = weft("run", FLOW, "--flow", "gate", "-i", f"marker={marker}")
    assert done.returncode == 3
    rid = run_id(done.stdout)
    assert f"run {rid} paused: step gate failed: ActionFailed: marker is present" in done.stdout
    assert f"weft resume {rid}" in done.stdout and f"weft skip {rid} gate" in done.stdout
    shown = weft("show", rid).stdout
    assert re.search(r"^gate\s+run\s+failed\s+1\s.*ActionFailed: marker is present$", shown, re.M)
    assert re.search(r"^last\s+run\s+pending\s+0", shown, re.M)
    assert weft("resume", rid).returncode == 3
    marker.unlink()
    done = weft("resume", rid)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"value": "one-ok"}'
    assert "gate running (attempt 3)" in done.stdout
    one_line_error(weft("resume", rid), f"run {rid} already succeeded; it cannot be resumed")


def test_skip_with_outputs_and_its_refusals(weft, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("x")
    rid = run_id(weft("run", FLOW, "--flow", "gate", "-i", f"marker={marker}").stdout)
    one_line_error(weft("skip", rid, "gaet"), "has no step 'gaet' (did you mean 'gate'?)")
    one_line_error(weft("skip", rid, "first"), "step first is succeeded, not failed")
    one_line_error(weft("skip", rid, "gate", "--output", "valeu=x"), "has no output 'valeu' (did you mean 'value'?)")
    one_line_error(weft("skip", "ZZZZZZ", "gate"), "no run 'ZZZZZZ'")
    assert json.loads(weft("show", rid, "--json").stdout)["history"][-1]["state"] == "paused"  # nothing changed
    done = weft("skip", rid, "gate", "--output", "value=manual")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"value": "one-manual"}'


def test_a_skip_leaving_another_step_failed_names_that_step_and_refuses_outputs_of_a_step_that_has_none(weft, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("x")
    rid = run_id(weft("run", FLOW, "--flow", "two_gates", "-i", f"marker={marker}").stdout)
    first = weft.show(rid)["error"]
    failed = first.split()[1]
    other = {"gate": "stop", "stop": "gate"}[failed]
    one_line_error(weft("skip", rid, "stop", "--output", "value=1"), "step stop has no outputs to give")  # (stored)
    done = weft("skip", rid, failed, "--output", "value=x") if failed == "gate" else weft("skip", rid, failed)
    assert done.returncode == 3 and f"paused: step {other} failed: " in done.stdout, done.stdout
    assert weft.show(rid)["error"].startswith(f"step {other} failed: ")  # it named the skipped step before


def test_cancel_and_rollback(weft, tmp_path):
    marker, effects = tmp_path / "marker", tmp_path / "effects"
    marker.write_text("x")
    paused = run_id(weft("run", FLOW, "--flow", "gate", "-i", f"marker={marker}").stdout)
    done = weft("cancel", paused)
    assert done.returncode == 0 and f"run {paused} cancelled" in done.stdout
    one_line_error(weft("cancel", paused), "was cancelled; it cannot be cancelled")
    one_line_error(weft("resume", paused), "was cancelled")

    rid = run_id(weft("run", FLOW, "--flow", "undoable", "-i", f"path={effects}", "-i", f"marker={marker}").stdout)
    done = weft("rollback", rid)
    assert done.returncode == 0 and f"run {rid} rolled back" in done.stdout
    lines = effects.read_text().splitlines()
    assert sorted(lines[:2]) == [f"{rid} one 1", f"{rid} two 1"] and sorted(lines[2:]) == ["undo one", "undo two"]
    one_line_error(weft("rollback", rid), "already rolled back")
    listed = json.loads(weft("list", "--state", "failed", "--json").stdout)
    assert [(r["id"], r["rolled_back"]) for r in listed] == [(rid, True)]


def test_list_filters_and_sorts_through_the_indexes(weft):
    first = run_id(weft("run", FLOW, "--flow", "basic", "-i", "n=1").stdout)
    second = run_id(weft("run", FLOW, "--flow", "slow", "-i", "seconds=0.01").stdout)
    ids = lambda *a: [r["id"] for r in json.loads(weft("list", "--json", *a).stdout)]  # noqa: E731
    assert ids() == [second, first]
    assert ids("--sort=-started") == [first, second]
    assert ids("--flow", "basic") == [first]
    assert ids("--tag", "test") == [first]
    assert ids("--state", "succeeded", "--limit", "1") == [second]
    assert ids("--sort", "flow") == [first, second]
    table = weft("list").stdout.splitlines()
    assert table[0].split()[:3] == ["RUN", "STATE", "FLOW"] and table[1].startswith(second)
    one_line_error(weft("list", "--state", "sleeping"), "no run state 'sleeping'")
    one_line_error(weft("list", "--sort", "size"), "cannot sort by 'size'")
    one_line_error(weft("list", "--since", "0001-01-01"), "since must lie from 1970 to the year 9999")
    one_line_error(weft("run", FLOW, "--flow", "basic", "-i", "n=1", "--workers", "0"), "--workers must be at least 1")


def test_a_run_driven_by_a_live_process_refuses_other_owners_and_takes_a_cancel(weft):
    owner = weft.start("run", FLOW, "--flow", "slow", "-i", "seconds=20")
    rid = run_id(owner.stdout.readline())
    read_until(owner, " s running")
    one_line_error(weft("resume", rid), f"run {rid} is being driven by pid {owner.pid}")
    one_line_error(weft("rollback", rid), "is being driven by pid")
    done = weft("cancel", rid)
    assert done.returncode == 0 and f"run {rid} cancelled" in done.stdout
    assert owner.wait(10) == 1
    out = owner.stdout.read()
    assert "cancel requested by" in out and f"run {rid} cancelled" in out


def test_signals_reach_a_live_owner_or_drive_the_run_themselves(weft):
    one_line = lambda *a: weft("signal", *a)  # noqa: E731
    owner = weft.start("run", FLOW, "--flow", "approval")
    rid = run_id(owner.stdout.readline())
    read_until(owner, "waiting for signal 'approval'")
    one_line_error(
        one_line(rid, "aproval", "ok=true"), "has no step waiting for signal 'aproval' (it waits for: approval)"
    )
    one_line_error(one_line(rid, "approval", "ok=maybe", "who=me"), "field 'ok': 'maybe' is not a bool")
    one_line_error(one_line(rid, "approval", "ok=true"), "needs field 'who' (str) as well")
    done = one_line(rid, "approval", "ok=true", "who=me")
    assert done.returncode == 0 and "handed to the process driving" in done.stdout
    assert owner.wait(10) == 0
    assert owner.stdout.read().splitlines()[-1] == 'result: {"ok": true}'

    owner = weft.start("run", FLOW, "--flow", "approval")
    rid = run_id(owner.stdout.readline())
    read_until(owner, "waiting for signal 'approval'")
    assert re.search(rf"^owner    pid {owner.pid} on \S+$", weft("show", rid).stdout, re.M)
    owner.kill()
    owner.wait()
    gone = f"owner    pid {owner.pid} on "
    shown = [x for x in weft("show", rid).stdout.splitlines() if x.startswith(gone)]
    assert shown and shown[0].endswith(f" (gone: weft resume {rid} goes on, weft cancel {rid} stops it)")
    done = one_line(rid, "approval", "ok=false", "who=you")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"ok": false}'
    assert "log succeeded" in done.stdout


def test_each_pauses_on_a_failing_item_and_resume_finishes_it(weft, tmp_path):
    effects, marker = tmp_path / "effects", tmp_path / "m"
    (tmp_path / "m3").write_text("x")
    args = ("run", FLOW, "--flow", "bulk", "-i", f"path={effects}", "-i", f"marker={marker}", "-i", "items=[1,2,3,4,5]")
    done = weft(*args)
    assert done.returncode == 3
    rid = run_id(done.stdout)
    assert "1 of 5 sub-runs did not succeed" in done.stdout
    shown = json.loads(weft("show", rid, "--json").stdout)
    subs = shown["steps"][0]["sub_runs"]
    assert [s["state"] for s in subs] == ["succeeded", "succeeded", "paused", "succeeded", "succeeded"]
    assert [s["parent"]["index"] for s in subs] == [0, 1, 2, 3, 4]
    assert "sub-runs of runs: 1 paused, 4 succeeded" in weft("show", rid).stdout
    (tmp_path / "m3").unlink()
    done = weft("resume", rid)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == 'result: {"done": 5}'
    assert sorted(effects.read_text().split("\n")[:-1]) == sorted(f"{s['id']} item{i} 1" for i, s in enumerate(subs, 1))
