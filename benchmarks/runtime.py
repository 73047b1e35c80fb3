"""Runtime benchmarks: durable steps per second on LMDB against a plain thread pool.

    python benchmarks/runtime.py [--steps 1000] [--memory-steps 10000] [--async-calls 10000] [--only-async]
                                 [--only-steps] [--only-startup] [--only-each] [--items 10000]

Prints figures; asserts nothing. Every durable run commits each transition
(fsync) before acting on it, in a temporary store.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from runtime_support import plans  # noqa: E402
from weft.sdk import actions
from weft.runtime.engine import session
from weft.runtime.engine.driver import Driver  # noqa: E402
from weft.runtime.stores.lmdb.store import Store  # noqa: E402
from weft.runtime.executors.asyncio import new_loop  # noqa: E402
from weft.stdlib_actions.http1.client import Client  # noqa: E402
from weft.stdlib_actions.http1.pool import Origin, Pool  # noqa: E402

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


TIMES = 5  # runs of a row measured in milliseconds: this shared machine's speed moves by a third from run to run


def median(figures: list[float]) -> float:
    return sorted(figures)[len(figures) // 2]


def spread(figures: list[float], form: str) -> str:
    """ "median (least-most)" of `figures`, each written with `form`."""
    return f"{form.format(median(figures))} ({form.format(min(figures))}-{form.format(max(figures))})"


def commit_latency(store: Store, n: int = 200) -> float:
    """Median seconds of one durable commit of one small record, for reading the figures below."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        store.write(lambda t: t.put_meta("bench", i))
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def chain_beside_commits(store: Store, n: int, parts: int = 10) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, floor seconds, records seconds) of `n` non-idempotent no-op steps in a chain, run
    in `parts` runs, each right after as many commits of one small record (the floor) and followed by the commits
    of the records its rounds wrote, through the store alone (`records_alone`): the disk's latency on a shared
    machine moves by 10x within a minute, so the floors are measured beside the chain, part by part."""
    chain = plans.chain(n // parts)
    for step in chain["steps"]:
        step["action"]["idempotent"] = False
    took = cpu = floor = alone = 0.0
    for _ in range(parts):
        t0 = time.perf_counter()
        for i in range(n // parts):
            store.write(lambda t: t.put_meta("bench", i))
        floor += time.perf_counter() - t0
        wall, used, run = durable(store, chain)
        took, cpu, alone = took + wall, cpu + used, alone + records_alone(store, run["id"])
    return took, cpu, floor, alone


def records_alone(store: Store, run_id: str) -> float:
    """Seconds to commit again, one durable commit a round and no engine, what each round of the ended chain
    `run_id` wrote: its step's outcome, the next step's record as running and their two history events."""
    with store.read() as t:
        steps = list(t.steps(run_id).items())
        events = [e for _, e in t.events(run_id) if "step" in e]
    rounds = []
    for i, (sid, done) in enumerate(steps[:-1]):
        nxt, rec = steps[i + 1]
        running = {**rec, "state": "running", "ended": None, "outputs": None}
        rounds.append(((sid, done), (nxt, running), events[2 * i + 1 : 2 * i + 3]))
    t0 = time.perf_counter()
    for (sid, done), (nxt, running), history in rounds:

        def write(t) -> None:
            t.put_step(run_id, sid, done)
            t.put_step(run_id, nxt, running)
            t.append_events(run_id, history)

        store.write(write)
    return (time.perf_counter() - t0) * len(steps) / len(rounds)


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


# -- async actions: the local executor's event loop against a bare asyncio loop ------------------------

STD = "weft.stdlib_actions"


def os_threads() -> int:
    """OS threads of this process now."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def served(delay: float) -> tuple[subprocess.Popen, str]:
    """A benchmarks/slow_server.py process answering every request after `delay` seconds, and its URL."""
    server = os.path.join(ROOT, "benchmarks", "slow_server.py")
    proc = subprocess.Popen([sys.executable, server, str(delay)], stdout=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}/"


def fan_of(n: int, module: str, action: str, inputs: dict) -> dict:
    """One root, `n` independent calls of `module.action` after it, one sink after them all."""
    middle = [plans.step(f"s{i}", action, module=module, inputs=inputs, after=("root",)) for i in range(n)]
    return plans.plan("fan", [plans.step("root"), *middle, plans.step("sink", after=tuple(s["id"] for s in middle))])


def watched(store: Store, plan: dict, **options) -> tuple[float, int, float]:
    """(wall seconds, most OS threads of this process seen at a commit, CPU seconds of this process) of one durable
    run. What the process holds before it (the plan built here) is frozen out of the garbage collector's sight, as
    `weft run` freezes what compiling left."""
    gc.freeze()
    m, lease = session.create(store, plan, {}, user="bench", label=None, locks=[])
    most = os_threads()

    def observe(events: list, driver: Driver) -> None:
        nonlocal most
        most = max(most, os_threads())

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        run = Driver(store, m, lease, observer=observe, **options).drive()
    finally:
        gc.unfreeze()
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert run["state"] == "succeeded", run
    return took, most, cpu


def bare_loop(calls: int, call, client=None, times: int = 1) -> str:
    """ "W.WWWs (C.CCs CPU)": the wall and CPU seconds a bare event loop (the kind the local executor runs: uvloop's
    when installed) takes to await `calls` concurrent `call(c)`s, `c` made by `client()` on the loop (and closed
    after), or None; the medians of `times` such loops, with the least and most wall seconds."""

    async def all_of_them() -> tuple[float, float]:
        made = client() if client is not None else None
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(call(made) for _ in range(calls)))
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        if made is not None:
            await made.aclose()
        return took, cpu

    runs = []
    for _ in range(times):
        loop = new_loop()
        try:
            runs.append(loop.run_until_complete(all_of_them()))
        finally:
            loop.close()
    walls = [w for w, _ in runs]
    return f"{spread(walls, '{:.3f}') if times > 1 else f'{walls[0]:.3f}'}s ({median([c for _, c in runs]):.2f}s CPU)"


def raw_get(url: str):
    """A GET of `url` on a connection of its own, over asyncio streams, its answer read by its Content-Length: the
    least any HTTP client can do."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def get(_) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k == b"Content-Length")
        await reader.readexactly(length)
        writer.close()

    return get


class OverWire(httpx.AsyncBaseTransport):
    """httpx over std.http's pool: what std.http.request cost when it was httpx's client on a pool of Weft's own."""

    def __init__(self) -> None:
        self.pool = Pool()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = Origin(url.scheme, url.host, url.port or 80, None)
        head = [
            b"%s %s HTTP/1.1" % (request.method.encode(), url.raw_path),
            *(b"%s: %s" % h for h in request.headers.raw),
        ]
        reply = await self.pool.send(origin, b"\r\n".join(head) + b"\r\n\r\n" + await request.aread(), 60.0)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body, request=request)

    async def aclose(self) -> None:
        await self.pool.aclose()


def http_floors(url: str, calls: int, times: int = 1) -> str:
    """The bare loop's seconds for `calls` concurrent GETs of `url`: raw sockets, std.http's client, httpx on it
    (each the median of `times` loops)."""
    raw = bare_loop(calls, raw_get(url), times=times)
    ours = bare_loop(calls, lambda c: c.request("GET", url, timeout=60.0), Client, times)
    theirs = bare_loop(
        calls, lambda c: c.get(url, timeout=60.0), lambda: httpx.AsyncClient(transport=OverWire()), times
    )
    return f"bare loop: raw sockets {raw}, std.http's client {ours}, httpx over its pool {theirs}"


def async_rows(store: Store, many: int) -> None:
    """The rows of issue 13 for async actions, each beside its floors measured here, wall (and CPU) seconds (a new
    pool for each, as a run on a fresh worker has; the server is benchmarks/slow_server.py in a process of its
    own, its CPU not counted)."""
    print("async actions on the local executor's loop, durable, vs a bare event loop doing the same calls")
    watched(store, fan_of(10, STD, "sleep", {"seconds": 0.01}))  # warm up: the loop thread, imports
    took, threads, cpu = watched(store, fan_of(200, STD, "sleep", {"seconds": 0.1}))
    floor = bare_loop(200, lambda _: asyncio.sleep(0.1))
    print(f"  200 x std.sleep(0.1), default settings: {took:.3f}s ({cpu:.2f}s CPU), bare loop {floor} (target < 0.15s)")
    took, threads, cpu = watched(store, fan_of(many, STD, "sleep", {"seconds": 1.0}), concurrency=many)
    floor = bare_loop(many, lambda _: asyncio.sleep(1.0))
    print(f"  {many} x std.sleep(1) (--concurrency {many}): {took:.3f}s ({cpu:.2f}s CPU), bare loop {floor}")
    proc, url = served(0.05)
    try:
        watched(store, fan_of(500, f"{STD}.http", "request", {"url": url}))  # warm up: imports
        runs = [watched(store, fan_of(500, f"{STD}.http", "request", {"url": url})) for _ in range(TIMES)]
        print(
            f"  500 HTTP calls of 50 ms, default settings: {spread([w for w, _, _ in runs], '{:.3f}')}s "
            f"({median([c for _, _, c in runs]):.2f}s CPU) (target < 0.15s), {max(t for _, t, _ in runs)} OS threads; "
            f"{http_floors(url, 500, TIMES)}"
        )
    finally:
        proc.kill()
    proc, url = served(1.0)
    try:
        took, threads, cpu = watched(
            store, fan_of(many, f"{STD}.http", "request", {"url": url, "timeout": 60.0}), concurrency=many
        )
        print(
            f"  {many} concurrent HTTP calls of 1 s (--concurrency {many}): {took:.3f}s ({cpu:.2f}s CPU) (target < "
            f"2.5s), {threads} OS threads (target < 30); {http_floors(url, many)}"
        )
    finally:
        proc.kill()


# -- lighter steps and sub-runs (issue 13, items 3 to 5), each beside its floor ------------------------


def peak_heap(fn, measure=None):
    """(fn()'s result, the most anonymous resident memory of this process while it ran, in MB; or the most of
    `measure()`, sampled every 10 ms)."""
    most, stop = [0.0], threading.Event()
    measure = measure or heap_mb

    def sample() -> None:
        while not stop.wait(0.01):
            most[0] = max(most[0], measure())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        return fn(), most[0]
    finally:
        stop.set()
        sampler.join()


def heap_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def pure_chain_flow(folder: str, n: int) -> str:
    """A .flow file of a chain of `n` std.echo steps (pure)."""
    path = os.path.join(folder, f"chain{n}.flow")
    body = [f"    s{i} = std.echo(value: {i})" + (f" after s{i - 1}" if i else "") for i in range(n)]
    with open(path, "w") as f:
        f.write(f"flow chain{n}() {{\n" + "\n".join(body) + "\n}\n")
    return path


def each_plan(folder: str) -> dict:
    """A flow with one `each` over its `items`, concurrency 50, whose body calls one no-op."""
    from weft.compiler import compile_paths

    path = os.path.join(folder, "bulk.flow")
    with open(path, "w") as f:
        f.write(
            "use rt_actions as t\nflow bulk(items: list[int]) {\n  each i in items concurrency 50 { t.noop() }\n}\n"
        )
    return compile_paths([path]).plan("bulk")


def each_row(store: Store, folder: str, items: int) -> None:
    """The row of issue 13 for `each`: its wall and CPU seconds, its OS threads, beside a plain pool's calls."""
    noop = actions.lookup(plans.MODULE, "noop")
    plan = each_plan(folder)
    durable_inputs(store, plan, {"items": list(range(50))})  # warm up: the body's call is learnt quick here
    before, cpu = os_threads(), time.process_time()
    (took, _), most = peak_heap(lambda: durable_inputs(store, plan, {"items": list(range(items))}), os_threads)
    cpu = time.process_time() - cpu
    floor = plain_fan(items, noop, workers=50)
    print(
        f"  each over {items} items at concurrency 50: {took:.2f}s, {cpu:.2f}s of CPU (target < 6s), "
        f"{most - before:.0f} more OS threads at most; plain pool of 50 threads {floor:.2f}s; "
        f"load {os.getloadavg()[0]:.1f}"
    )


def step_rows(store: Store, folder: str, n: int, items: int, big: int) -> None:
    """The rows of issue 13 for lighter steps, sub-runs and big runs."""
    commit = commit_latency(store)
    print(f"lighter steps and sub-runs (one durable commit here: {commit * 1e6:.0f} µs, median)")
    noop = actions.lookup(plans.MODULE, "noop")
    runs = [durable(store, plans.fan(n - 2))[:2] for _ in range(TIMES)]
    floor = median([plain_fan(n, noop) for _ in range(TIMES)])
    print(
        f"  {n}-step fan-out, in process: {spread([w * 1e6 / n for w, _ in runs], '{:.0f}')} µs/step "
        f"({median([c for _, c in runs]) * 1e6 / n:.0f} µs CPU) (target < 40), plain pool {floor * 1e6 / n:.0f}"
    )
    small, long, cached = pure_chain_flow(folder, 10), pure_chain_flow(folder, n), os.path.join(folder, "cli-store")
    cli(folder, "run", small, "--store", cached), cli(folder, "run", long, "--store", cached)  # the plan cache
    (few, few_cpu), (many, many_cpu) = (best(folder, 3, "run", f, "--store", cached) for f in (small, long))
    print(
        f"  {n}-step chain of pure steps, whole weft run beyond a 10-step one: {(many - few) * 1e6 / (n - 10):.0f} "
        f"µs/step ({(many_cpu - few_cpu) * 1e6 / (n - 10):.0f} µs CPU) (target < 200)"
    )
    took, cpu, floor, alone = chain_beside_commits(store, n)
    print(
        f"  {n}-step chain of non-idempotent steps, in process: {took * 1e6 / n:.0f} µs/step ({cpu * 1e6 / n:.0f} µs "
        f"CPU), {took / floor:.2f}x as many durable commits of one small record made between its parts "
        f"({floor * 1e6 / n:.0f} µs each) (target < 1.3x); its rounds' records alone, committed through the store "
        f"with no engine: {alone * 1e6 / n:.0f} µs a round = {alone / floor:.2f}x"
    )
    each_row(store, folder, items)
    # its plan as a weft run reads it from the plan cache: packed in another process, read here (its steps sharing
    # what they have in common), and counted in the heap before
    from weft.plan.shared import unpack_plan

    made = "import sys; sys.path[:0] = %r\nfrom runtime_support import plans\nfrom weft.plan.shared import pack_plan\n"
    made = made % [ROOT, os.path.join(ROOT, "tests")] + f"sys.stdout.buffer.write(pack_plan(plans.fan({big - 2})))"
    fan = unpack_plan(subprocess.run([sys.executable, "-c", made], check=True, capture_output=True).stdout)
    base = heap_mb()
    (took, _), most = peak_heap(lambda: durable_inputs(store, fan, {}))
    print(
        f"  {big}-step fan-out, in process: {took:.2f}s (target < 6s), heap {base:.0f} MB before (with the plan, read "
        f"from the plan cache's bytes), {most:.0f} MB at most (target < 200): {(most - base) * 1024 / big:.1f} KB/step "
        "of the run's own (target < 3 KB)"
    )


def durable_inputs(store: Store, plan: dict, inputs: dict, watch: bool = False) -> tuple[float, int]:
    """(wall seconds from creation to the end, most OS threads seen at a commit if `watch`) of one durable run."""
    most = os_threads()

    def observe(events: list, driver: Driver) -> None:
        nonlocal most
        most = max(most, os_threads())

    t0 = time.perf_counter()
    m, lease = session.create(store, plan, inputs, user="bench", label=None, locks=[])
    run = Driver(store, m, lease, observer=observe if watch else None).drive()
    assert run["state"] == "succeeded", run
    return time.perf_counter() - t0, most


def cli(folder: str, *args: str, **env: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one whole `weft` process, its bytecode cached as an installed
    Weft's is. The CPU figure is the steadier one on a loaded machine."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, **env}
    env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(folder, "pycache"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "weft.cli", *args], check=True, capture_output=True, text=True, env=env
    )
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.stdout


def best(folder: str, times: int, *args: str, **env: str) -> tuple[float, float]:
    """The least wall and the least CPU seconds of `times` whole `weft` processes."""
    runs = [cli(folder, *args, **env)[:2] for _ in range(times)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def fan_flow(folder: str, n: int) -> str:
    """A .flow file of `n` independent std.echo steps."""
    path = os.path.join(folder, f"fan{n}.flow")
    with open(path, "w") as f:
        f.write(f"flow fan{n}() {{\n" + "".join(f"    s{i} = std.echo(value: {i})\n" for i in range(n)) + "}\n")
    return path


def startup_rows(folder: str, n: int, big: int) -> None:
    """The rows of issue 13 for start-up (cached plans) and `weft show` of a big run, beside a bare interpreter
    (wall seconds, then CPU seconds of the process)."""
    store = os.path.join(folder, "startup-store")
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(5)]
    print(
        "start-up and big runs, whole processes, wall (CPU) seconds (a bare `python -c pass` here: "
        f"{min(w for w, _ in bare):.3f}s ({min(c for _, c in bare):.3f}s))"
    )
    one = fan_flow(folder, 1)
    out = cli(folder, "run", one, "--store", store)[2]  # fills the plan cache and the bytecode cache
    cached = best(folder, 5, "run", one, "--store", store)
    uncached = best(folder, 3, "run", one, "--store", store, WEFT_PLAN_CACHE="off")
    print(
        f"  weft run of a 1-step flow (cached plan): {cached[0]:.3f}s ({cached[1]:.3f}s) (target < 0.2s); "
        f"compiled each time {uncached[0]:.3f}s ({uncached[1]:.3f}s)"
    )
    small, large = fan_flow(folder, 10), fan_flow(folder, n)
    cli(folder, "run", small, "--store", store), cli(folder, "run", large, "--store", store)  # their plans cached
    few, many = best(folder, 5, "run", small, "--store", store), best(folder, 5, "run", large, "--store", store)
    floor = plain_fan(n, actions.lookup("weft.stdlib_actions", "echo"), inputs={"value": 1})
    print(
        f"  {n}-step fan-out, whole weft run beyond a 10-step one: {(many[0] - few[0]) * 1e6 / (n - 10):.0f} µs/step "
        f"({(many[1] - few[1]) * 1e6 / (n - 10):.0f} µs CPU) (target < 100), plain pool in process "
        f"{floor * 1e6 / n:.0f} µs/step"
    )
    with Store(store) as s:
        _, _, run = durable(s, plans.fan(big - 2))
    shown = best(folder, 3, "show", run["id"], "--store", store)
    tiny = best(folder, 3, "show", out.split()[1], "--store", store)
    printed = len(cli(folder, "show", run["id"], "--store", store)[2])
    print(
        f"  weft show of a {big}-step run: {shown[0]:.3f}s ({shown[1]:.3f}s) (target < 0.3s), {printed / 1024:.1f} KB "
        f"printed; of a 1-step run {tiny[0]:.3f}s ({tiny[1]:.3f}s)"
    )


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--memory-steps", type=int, default=10000)
    parser.add_argument("--async-calls", type=int, default=10000, help="concurrent HTTP calls of 1 s")
    parser.add_argument("--only-async", action="store_true", help="only the async actions' rows")
    parser.add_argument("--items", type=int, default=10000, help="items of the each row")
    parser.add_argument("--big-steps", type=int, default=50000, help="steps of the big fan-out row")
    parser.add_argument("--only-steps", action="store_true", help="only the rows of lighter steps and sub-runs")
    parser.add_argument("--only-startup", action="store_true", help="only the rows of start-up and weft show")
    parser.add_argument("--only-each", action="store_true", help="only the row of each over --items items")
    args = parser.parse_args()
    n = args.steps
    noop = actions.lookup(plans.MODULE, "noop")
    sleep = actions.lookup(plans.MODULE, "hang")
    with tempfile.TemporaryDirectory() as folder, Store(os.path.join(folder, "store")) as store:
        durable(store, plans.fan(50))  # warm up: imports, first map growth
        if args.only_async:
            async_rows(store, args.async_calls)
            return
        if args.only_steps:
            step_rows(store, folder, n, args.items, args.big_steps)
            return
        if args.only_each:
            each_row(store, folder, args.items)
            return
        if args.only_startup:
            startup_rows(folder, n, args.big_steps)
            return
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
        async_rows(store, args.async_calls)
        step_rows(store, folder, n, args.items, args.big_steps)
        startup_rows(folder, n, args.big_steps)


if __name__ == "__main__":
    main()
