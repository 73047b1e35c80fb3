"""`weft worker` stops on SIGTERM or SIGINT, always (issue 9, item 8).

The signal handler only counts the signal and writes to a self-pipe, so it can
never wait for a lock the interrupted main thread holds (a handler that set a
threading.Event hung the worker for good about once in 80 stops under load). A
second signal stops it at once, cutting the grace short.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time

import pytest
from conftest import Output, Weft

from weft.client import Client

pytestmark = pytest.mark.slow  # `weft worker` processes stopped by signals

FLOWS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support", "worker.flow")


class Serving(Output):
    """A `weft worker` process and the lines it printed so far."""

    def __init__(self, weft: Weft, *args: str) -> None:
        super().__init__(weft.start("worker", *args))

    def exit_within(self, seconds: float) -> float:
        """Seconds until the process exited (0); fails if it takes longer than `seconds`."""
        t0 = time.time()
        try:
            code = self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the worker did not exit within {seconds:g}s of the signal: {self.lines}") from None
        self._reader.join(5)
        err = self.proc.stderr.read()
        assert code == 0 and "Traceback" not in err, (code, err)
        return time.time() - t0


def _detach(weft: Weft, *args: str) -> str:
    done = weft("run", "--detach", FLOWS, *args, code=0)
    return done.stdout.split()[1]


def test_sigterm_always_stops_a_serving_worker(tmp_path):
    """30 workers, each serving runs of quick steps, stopped by SIGTERM at a random instant: all exit in time."""
    weft = Weft(tmp_path)
    effects = str(tmp_path / "effects")
    rng = random.Random(8)
    grace, took = 5.0, []
    with Client(weft.store) as client:  # queues the runs as `weft run --detach` does, without 60 more processes
        chain = client.compile(FLOWS, "chain")
        for i in range(30):
            for _ in range(2):
                client.start_plan(chain, detach=True, texts=[f"path={effects}", "pause=0.01"])
            worker = Serving(weft, "--grace", f"{grace:g}s", "--workers", "4")
            worker.wait_for(r"serving")
            time.sleep(rng.uniform(0.0, 0.6))
            worker.proc.send_signal(signal.SIGTERM if i % 3 else signal.SIGINT)
            took.append(worker.exit_within(grace + 10.0))
    assert max(took) < grace + 10.0


def test_a_second_signal_stops_at_once(tmp_path):
    weft = Weft(tmp_path)
    effects = tmp_path / "effects"
    rid = _detach(weft, "--flow", "slow", "-i", f"path={effects}", "-i", "seconds=60")
    worker = Serving(weft, "--grace", "60s")
    worker.wait_for(rf"run {rid} slow started")  # its 60 s step runs
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait_for(r"stopping: 1 run\(s\) finish their running steps \(grace 60s\)")
    assert worker.proc.poll() is None  # the first waits for the step, within the grace
    worker.proc.send_signal(signal.SIGINT)
    assert worker.exit_within(5.0) < 5.0
    assert any(re.search(rf"run {rid} let go with step\(s\) long still running", x) for x in worker.lines)


def test_a_signal_stops_an_idle_worker_at_once(tmp_path):
    worker = Serving(Weft(tmp_path), "--grace", "30s")
    worker.wait_for(r"serving")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.exit_within(5.0) < 1.0 + 1.0  # woken by the pipe, not by the next look at the queue
    assert worker.lines[-1].endswith("stopped")
