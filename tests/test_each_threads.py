"""Sub-runs of an `each` driven in the parent's process cost no thread each.

They share the parent driver's executor and one heartbeat per store and
process, and are claimed and driven in a reused pool of threads, one per
sub-run driven at once: the number of OS threads stays bounded whatever the
number of items, and falls back once the run ended.
"""

from __future__ import annotations

import os
import threading
import time

from weft.client import Client
from weft.runtime.engine.driver import DEFAULT_WORKERS
from weft.runtime.engine.each import CHILD_RUNS

FLOW = """use rt_actions as t

flow many(items: list[int]) {
    each i in items concurrency 50 {
        t.hang(seconds: 0.02)
    }
}
"""


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Peak:
    """The most OS threads this process had at once while it was sampling (every 2 ms, in a thread)."""

    def __init__(self) -> None:
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.most = max(self.most, os_threads())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_an_each_over_300_items_runs_in_a_bounded_number_of_threads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support"))
    flow = tmp_path / "many.flow"
    flow.write_text(FLOW)
    with Client(tmp_path / "store") as client:
        rid = client.start_plan(client.compile(str(flow)), {"items": list(range(300))}, hold=True)
        before = os_threads()
        with Peak() as peak:
            run = client.drive(rid)
    end = time.monotonic() + 5
    while os_threads() > before + 2 and time.monotonic() < end:  # closed pools' threads exit as they wake
        time.sleep(0.02)
    after = os_threads()
    assert run.state == "succeeded"
    # at most a driver thread per sub-run driven at once (the children a process drives for its run: one that
    # ended holds its thread a moment after its parent made the next), an executor thread per call in flight (the
    # items' concurrency), and a few for the parent; it was three per sub-run (its driver, its heartbeat, its own
    # executor's), each started anew for every item
    drivers, calls = max(DEFAULT_WORKERS, CHILD_RUNS), 50
    assert peak.most - before <= drivers + calls + 8, (peak.most, before)
    assert after <= before + 2, (before, after)  # the pools were let go
