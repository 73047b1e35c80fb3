"""Runtime benchmarks: durable steps per second on LMDB against a plain thread pool.

    python benchmarks/runtime.py [--steps 1000] [--memory-steps 10000]

Prints figures; asserts nothing. Every durable run commits each transition
(fsync) before acting on it, in a temporary store.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from runtime_support import plans  # noqa: E402
from weft.sdk import actions
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver  # noqa: E402
from weft.runtime.stores.lmdb.store import Store  # noqa: E402

sys.path.append(plans.HERE)


def memory() -> str:
    """Resident memory: the process's own (anonymous) pages, and the store's mapped file pages."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return f"heap {fields['RssAnon']:.1f} MB + mapped files {fields['RssFile']:.1f} MB"


def durable(store: Store, plan: dict, workers: int = 16) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the whole process, run record) of one durable run."""
    m, lease = session.create(store, plan, {}, user="bench", label=None, locks=[])
    t0, c0 = time.perf_counter(), time.process_time()
    run = Driver(store, m, lease, workers=workers).drive()
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert run["state"] == "succeeded", run
    return took, cpu, run


def commit_latency(store: Store, n: int = 200) -> float:
    """Median seconds of one durable commit of one small record, for reading the figures below."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        store.write(lambda t: t.put_meta("bench", i))
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def plain_chain(n: int, defn: actions.ActionDef) -> float:
    with ThreadPoolExecutor(16) as pool:
        t0 = time.perf_counter()
        for _ in range(n):
            pool.submit(actions.call, defn, {}).result()
        return time.perf_counter() - t0


def plain_fan(n: int, defn: actions.ActionDef, workers: int = 16, inputs: dict | None = None) -> float:
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        wait([pool.submit(actions.call, defn, inputs or {}) for _ in range(n)])
        return time.perf_counter() - t0


def commits(store: Store, run_id: str) -> int:
    """Write transactions the run took: one per distinct event time (a round shares one `now`)."""
    with store.read() as t:
        return len({e["t"] for _, e in t.events(run_id)})


def report(name: str, n: int, took: float, cpu: float, base: float, rounds: int) -> None:
    print(
        f"{name:<8} {n / took:>6.0f} steps/s  {took * 1e6 / n:>5.0f} µs/step ({cpu * 1e6 / n:>4.0f} µs CPU)  "
        f"plain pool {n / base:>6.0f} steps/s  ratio {took / base:>5.1f}x  "
        f"overhead {(took - base) * 1e6 / n:>4.0f} µs/step  {rounds} commits"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--memory-steps", type=int, default=10000)
    args = parser.parse_args()
    n = args.steps
    noop = actions.lookup(plans.MODULE, "noop")
    sleep = actions.lookup(plans.MODULE, "hang")
    with tempfile.TemporaryDirectory() as folder, Store(os.path.join(folder, "store")) as store:
        durable(store, plans.fan(50))  # warm up: imports, first map growth
        print(f"one durable commit: {commit_latency(store) * 1e3:.2f} ms (median)")
        print(f"{n} no-op steps, durable on LMDB (fsync per commit) vs ThreadPoolExecutor in-process")
        took, cpu, run = durable(store, plans.chain(n))
        report("chain", n, took, cpu, plain_chain(n, noop), commits(store, run["id"]))
        took, cpu, run = durable(store, plans.fan(n - 2))
        report("fan-out", n, took, cpu, plain_fan(n, noop), commits(store, run["id"]))

        sleepers = plans.fan(200, "hang", inputs={"seconds": plans.lit(0.1)})
        took, _, _ = durable(store, sleepers, workers=200)
        base = plain_fan(200, sleep, workers=200, inputs={"seconds": 0.1})
        print(f"200 steps sleeping 0.1s, 200 workers: {took:.3f}s durable, {base:.3f}s plain pool, ideal 0.100s")

        big = plans.fan(args.memory_steps - 2)
        print(f"{args.memory_steps}-step runs, resident memory before: {memory()}")
        for i in range(3):
            took, _, _ = durable(store, big)
            print(f"  after run {i + 1} ({args.memory_steps / took:.0f} steps/s): {memory()}")


if __name__ == "__main__":
    main()
