"""`weft serve` on a store of 100,000 runs: the API's latency and throughput beside the Client in process.

    python benchmarks/server.py [--runs 100000] [--starts 1000]

Writes the runs straight through the store API (tests/runtime_support/catalog_data.py),
drives one 1,000-step run, then starts a real `weft serve` process on a free
loopback port and measures, over HTTP:
- a filtered first page of 50 runs (p50 and p99 over 200 requests; target p50 < 50 ms);
- the run page of the 1,000-step run (target < 300 ms);
- commit-to-client latency of stream events (/api/v1/events; target p50 < 100 ms);
- three-step runs started over POST /api/v1/runs and driven to the end by the
  embedded worker (target >= 200 runs/s).
The floor beside each: the same list, run page and starts through the Client in
this process. Prints figures; asserts nothing but that the runs succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from runtime_support import catalog_data, plans  # noqa: E402
from weft.client import Client  # noqa: E402
from weft.runtime.stores import open_store  # noqa: E402

sys.path.append(plans.HERE)
THREE = """\
flow three(n: int = 1) -> (n: int) {
    a = std.echo(value: n)
    b = std.echo(value: a.value)
    c = std.echo(value: b.value)
    return (n: c.value)
}
"""


def ms(seconds: list[float]) -> str:
    q = statistics.quantiles(seconds, n=100) if len(seconds) > 1 else seconds * 99
    return f"p50 {statistics.median(seconds) * 1000:6.1f} ms  p99 {q[98] * 1000:6.1f} ms"


def timed(fn, times: int) -> list[float]:
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)
    return took


def serve(folder: str, flows: str) -> tuple[subprocess.Popen, str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, plans.HERE]))
    command = [sys.executable, "-m", "weft.cli", "serve", "--port", "0", "--store", folder, "--flows", flows]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    text = ""
    while "weft serve: store" not in text:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("weft serve did not start:\n" + text)
        text += line
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    url = re.search(r"console at (\S+)/ ", text).group(1)
    return proc, url, re.search(r"operator token (\S+)", text).group(1)


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far (load on the machine does not change it)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_latency(url: str, token: str, client: Client, plan: dict, runs: int) -> list[float]:
    """Seconds from an event's commit (its time) to its arrival over /api/v1/events, for `runs` short runs."""
    seen: list[float] = []
    ready = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream("GET", f"{url}/api/v1/events", headers=headers, timeout=60) as r:
            for line in r.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    seen.append(time.time() - json.loads(line[6:])["t"])
                    if len(seen) >= runs * 9:  # a three-step run makes 9 events
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    for _ in range(runs):
        client.wait(client.start_plan(plan))
        time.sleep(0.02)
    thread.join(30)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=1000)
    opts = parser.parse_args()
    print(f"load average at start {load()} ({os.cpu_count()} cores)")
    folder = tempfile.mkdtemp(prefix="weft-server-")
    store_path, flows = os.path.join(folder, "store"), os.path.join(folder, "flows")
    os.makedirs(flows)
    with open(os.path.join(flows, "three.flow"), "w") as f:
        f.write(THREE)
    with open_store(store_path) as store:
        t0 = time.perf_counter()
        catalog_data.fill(store, opts.runs, now=time.time(), parents=5, children_per_parent=1000)
        print(f"wrote {opts.runs:,} runs in {time.perf_counter() - t0:.1f}s")
    client = Client(store_path)
    big = client.start_plan(plans.chain(1000))
    assert client.wait(big).state == "succeeded"
    three = client.compile(os.path.join(flows, "three.flow"))

    floor_list = timed(lambda: client.runs(state="failed", limit=50), 200)
    floor_page = timed(lambda: client.get(big), 20)
    t0 = time.perf_counter()
    ids = [client.start_plan(three, {"n": i}) for i in range(opts.starts)]
    for rid in ids:
        assert client.wait(rid).state == "succeeded"
    floor_starts = opts.starts / (time.perf_counter() - t0)
    client.close()

    proc, url, token = serve(store_path, flows)
    try:
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        http.get("/api/v1/runs")  # warm up
        cpu0 = cpu_seconds(proc.pid)
        api_list = timed(
            lambda: http.get("/api/v1/runs", params={"state": "failed", "limit": 50}).raise_for_status(), 200
        )
        list_cpu = (cpu_seconds(proc.pid) - cpu0) / 200
        api_page = timed(lambda: http.get(f"/api/v1/runs/{big}").raise_for_status(), 20)

        def post(i: int) -> str:
            r = http.post("/api/v1/runs", json={"flow": "three", "inputs": {"n": i}})
            r.raise_for_status()
            return r.json()["id"]

        t0, cpu0 = time.perf_counter(), cpu_seconds(proc.pid)
        with ThreadPoolExecutor(16) as pool:
            started = list(pool.map(post, range(opts.starts)))
        posted = time.perf_counter() - t0
        with Client(store_path) as reader:
            for rid in started:
                while reader.get(rid).state not in ("succeeded", "failed", "paused"):
                    time.sleep(0.01)
                assert reader.get(rid).state == "succeeded"
            api_starts = opts.starts / (time.perf_counter() - t0)
            server_cpu = (cpu_seconds(proc.pid) - cpu0) / opts.starts
            latency = stream_latency(url, token, reader, three, 30)
        http.close()
    finally:
        proc.terminate()
        proc.wait(60)

    print(f"\n{'':<44} {'over HTTP (weft serve)':<32} {'Client in process':<32}")
    print(f"{'first page of 50 failed runs (200 times)':<44} {ms(api_list):<32} {ms(floor_list):<32}")
    print(f"{'run page of a 1,000-step run (20 times)':<44} {ms(api_page):<32} {ms(floor_page):<32}")
    print(
        f"{f'{opts.starts} three-step runs started and driven':<44} {api_starts:>7.0f} runs/s"
        f" (POSTs alone {opts.starts / posted:,.0f}/s)  {floor_starts:>7.0f} runs/s"
    )
    print(f"{'stream: commit to client, 270 events':<44} {ms(latency):<32}")
    print(f"{'server CPU per first page of 50 failed runs':<44} {list_cpu * 1000:6.2f} ms  (whatever the load)")
    print(
        f"{'server CPU per run started and driven':<44} {server_cpu * 1000:6.2f} ms"
        f"  (one process: at most {1 / server_cpu:,.0f} runs/s on one core, whatever the load)"
    )
    print(f"load average at the end {load()}: wall times above include waits for a core when it exceeds the cores")
    print(
        f"\nratios: list {statistics.median(api_list) / statistics.median(floor_list):.1f}x, "
        f"run page {statistics.median(api_page) / statistics.median(floor_page):.1f}x, "
        f"starts {floor_starts / api_starts:.2f}x slower over HTTP"
    )


if __name__ == "__main__":
    main()
