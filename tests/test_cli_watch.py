"""`weft watch RUN`: a run driven by another process, followed live from the store until it ends or pauses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Output, Weft

ROOT = Path(__file__).resolve().parent.parent
HOST = str(ROOT / "examples" / "foreman" / "host.flow")
INPUTS = ("-i", "name=web1", "-i", "mac=52:54:00:00:00:01", "-i", "subnet=10.0.0.0/24")

pytestmark = pytest.mark.slow


@pytest.fixture
def weft(tmp_path) -> Weft:
    w = Weft(tmp_path)
    w.proxy = tmp_path / "proxy"
    w.proxy.mkdir()
    w.env.update(WEFT_PROXY_STATE=str(w.proxy / "state.json"), PYTHONPATH=str(ROOT))
    return w


def test_watch_follows_a_run_a_worker_drives_and_exits_with_its_outcome(weft):
    (weft.proxy / "fail").write_text("dns_create:PTR\n")
    rid = weft("run", "--detach", HOST, *INPUTS, code=0).stdout.split()[1]
    watching = Output(weft.start("watch", rid, stderr=subprocess.STDOUT))
    watching.wait_for(f"watching run {rid} \\(pending\\)")
    worker = Output(weft.start("worker", stderr=subprocess.STDOUT))
    try:
        assert watching.proc.wait(30) == 3  # paused, as `weft run` says it
    finally:
        worker.proc.terminate()
        worker.proc.wait(30)
    lines = watching.lines
    shown = [re.sub(r"^\d\d:\d\d:\d\d ", "", x) for x in lines[1:]]
    for expected in ("run running", "dhcp succeeded", "a succeeded", "run paused: step ptr failed"):
        assert any(x.startswith(expected) for x in shown), (expected, lines)
    assert sum(x.startswith("dhcp succeeded") for x in shown) == 1  # every transition once
    assert f"  weft resume {rid}      retry ptr and go on" in lines

    weft("resume", rid, code=0)
    done = weft("watch", rid, code=0)  # an ended run: its whole history, then its outcome
    assert done.stdout.splitlines()[0] == f"watching run {rid} (succeeded)"
    assert f"run {rid} succeeded" in done.stdout and "ptr succeeded" in done.stdout


def test_watch_of_no_such_run_says_so(weft):
    weft("run", HOST, *INPUTS, code=0)
    done = weft("watch", "ZZZZ", code=2)
    assert "no run 'ZZZZ'" in done.stderr and sys.executable not in done.stderr
