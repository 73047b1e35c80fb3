"""`weft worker`'s log: one line per change of state; the let-go between polls only at the debug level."""

from __future__ import annotations

import os
import re
import signal

import pytest
from conftest import Output

pytestmark = pytest.mark.slow  # `weft worker` processes

FLOWS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "worker.flow")


def serve_one_polled_run(weft, *options: str) -> tuple[str, list[str]]:
    """Queue a run whose polling step takes a second (about ten polls), serve it with a worker; its log lines."""
    done = weft(
        "run", "--detach", FLOWS, "--flow", "polled", "-i", f"path={weft.folder / 'effects'}", "-i", "seconds=1"
    )
    rid = done.stdout.split()[1]
    worker = Output(weft.start("worker", *options))
    worker.wait_for(f"run {rid} polled succeeded in ")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0
    worker._reader.join(5)
    assert "Traceback" not in worker.proc.stderr.read()
    return rid, [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in worker.lines]


def test_polls_make_no_lines_by_default(weft):
    rid, lines = serve_one_polled_run(weft)
    mine = [line for line in lines if line.startswith(f"run {rid}")]
    assert mine == [
        f"run {rid} polled started",
        f"run {rid} step use_ suspended (started; first poll in 0.05s)",
        mine[-1],
    ] and mine[-1].startswith(f"run {rid} polled succeeded in "), lines


@pytest.mark.parametrize("how", ["--verbose", "WEFT_LOG=debug"])
def test_the_debug_level_logs_every_let_go_between_polls(weft, how):
    if how.startswith("WEFT_LOG"):
        weft.env["WEFT_LOG"] = "debug"
    rid, lines = serve_one_polled_run(weft, *([how] if how.startswith("--") else []))
    waits = [line for line in lines if line.startswith(f"run {rid} waits, back at ")]
    assert len(waits) >= 3, lines
