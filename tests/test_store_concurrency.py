"""Readers beside a writer in one process, on the LMDB backend: reads do not wait for commits.

Run with -s to see the figures.
"""

from __future__ import annotations

import threading
import time

from runtime_support.plans import fan
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver
from weft.runtime.stores import open_store
from weft.runtime.stores.query import Query

STEPS = 1000
SLICES = 2  # halves of the run: each sees reads end (a quarter of a fast run is shorter than one read on a loaded machine)


def test_two_threads_read_runs_while_a_driver_commits_a_1000_step_run(tmp_path):
    with open_store(str(tmp_path / "store")) as store:
        plan = fan(STEPS - 2)
        for step in plan["steps"]:  # not idempotent: every round commits (idempotent quick steps share commits)
            step["action"]["idempotent"] = False
        m, lease = session.create(store, plan, {}, user="test", label=None, locks=[])
        rid = m.run["id"]
        writes: list[tuple[float, float]] = []  # from a write transaction's begin (its fn) to its commit's end
        write = store.write

        def timed_write(fn):
            began: list[float] = []

            def timed(t):
                began.append(time.perf_counter())
                return fn(t)

            try:
                return write(timed)
            finally:
                writes.append((began[-1], time.perf_counter()))

        store.write = timed_write
        stop = threading.Event()
        reads: dict[str, list[tuple[float, float]]] = {"list": [], "get": []}

        def list_runs():
            while not stop.is_set():
                start = time.perf_counter()
                page = store.search(Query(limit=20))
                assert [r["id"] for r in page.runs] == [rid]
                reads["list"].append((start, time.perf_counter()))

        def get_run():
            while not stop.is_set():
                start = time.perf_counter()
                with store.read() as t:
                    run, steps = t.run(rid), t.steps(rid)
                assert run["id"] == rid and len(steps) == STEPS
                reads["get"].append((start, time.perf_counter()))

        readers = [threading.Thread(target=list_runs), threading.Thread(target=get_run)]
        for reader in readers:
            reader.start()
        began = time.perf_counter()
        try:
            run = Driver(store, m, lease, workers=16).drive()  # 16 calls a round: 60-odd commits to read beside
        finally:
            ended = time.perf_counter()
            stop.set()
            for reader in readers:
                reader.join()
        assert run["state"] == "succeeded"

        took = ended - began
        done = [r for rs in reads.values() for r in rs if began <= r[1] <= ended]
        during_writes = [r for r in done if any(w0 <= r[0] and r[1] <= w1 for w0, w1 in writes)]
        per_slice = [
            sum(began + took * i / SLICES <= r[1] < began + took * (i + 1) / SLICES for r in done)
            for i in range(SLICES)
        ]
        print(
            f"\n{STEPS}-step run: {len(writes)} commits in {took:.2f}s; reads while it ran: "
            f"{sum(began <= r[1] <= ended for r in reads['list']) / took:.0f} lists/s, "
            f"{sum(began <= r[1] <= ended for r in reads['get']) / took:.0f} gets/s; "
            f"{len(during_writes)} reads began and ended inside a write transaction; per half: {per_slice}"
        )
        assert len(writes) >= 20
        assert during_writes, "no read completed while a write transaction was in flight"
        assert all(per_slice), f"reads stalled during part of the run: {per_slice}"
