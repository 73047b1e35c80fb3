"""Distributed execution on one machine: Weft on two agents against plain Celery, same Redis, same pool.

    python benchmarks/distributed.py [--steps 1000] [--calls 500] [--concurrency 16]

Starts its own redis-server (no persistence) on a free loopback port and works
in a temporary folder:

1. 1,000 no-op tasks sent directly as one Celery group to two plain Celery
   workers (thread pool, `--concurrency` each, msgpack, late acknowledgement,
   prefetch 1: the agents' own settings), waiting for every result; then the
   same 1,000 no-op steps fanned out by one `weft run --broker` on two
   `weft agent`s, every dispatch, start and result durable in the store. The
   ratio is Weft's time over Celery's (target: under 2x).
2. 500 `std.http.request` steps, each waiting 50 ms on a local HTTP server
   (threads, 127.0.0.1), on the same two agents; against the bound that the
   agents' threads set (calls x 50 ms / threads).

Weft's times are the run's own (started to ended, from `weft show --json`),
and the whole `weft run` command (compile, store, start) beside them. Prints
figures; asserts nothing. Run it on a quiet machine: it prints the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from redis_support import Agent, Redis  # noqa: E402

NOOP_ACTIONS = """\
from weft import action

@action(idempotent=True)
def noop() -> None:
    \"\"\"Nothing: the cost of a step is all that is measured.\"\"\"
"""

CELERY_APP = """\
import os
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BROKER"])
app.conf.update(
    task_serializer="msgpack", result_serializer="msgpack", accept_content=["msgpack"],
    result_accept_content=["msgpack"], task_acks_late=True, worker_prefetch_multiplier=1,
    task_default_queue="bench",
)

@app.task(name="bench.noop")
def noop():
    return None
"""


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


class Slow(BaseHTTPRequestHandler):
    """Answers every GET after 50 ms."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(0.05)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def celery_workers(folder: Path, env: dict, concurrency: int) -> list[subprocess.Popen]:
    """Two plain Celery workers of the bench app, once both said they are ready."""
    (folder / "bench_app.py").write_text(CELERY_APP)
    procs = []
    for name in ("plain1", "plain2"):
        argv = [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "--pool=threads"]
        argv += [f"--concurrency={concurrency}", "--queues=bench", f"--hostname={name}@%h", "--loglevel=INFO"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        procs.append(
            subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    for proc in procs:
        for line in proc.stdout:
            if " ready." in line:
                break
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    return procs


def celery_group(folder: Path, broker: str, n: int) -> float:
    """Seconds from sending `n` no-op tasks as one group to having every result."""
    sys.path.insert(0, str(folder))
    os.environ["BENCH_BROKER"] = broker
    from bench_app import noop
    from celery import group

    noop.apply_async().get(timeout=60)  # the connections made, as Weft's agents' are
    t0 = time.perf_counter()
    group(noop.s() for _ in range(n)).apply_async().get(timeout=600)
    return time.perf_counter() - t0


def weft_run(folder: Path, env: dict, broker: str, name: str, body: list[str]) -> tuple[float, float]:
    """(run seconds, command seconds) of one `weft run --broker` of a flow of the steps `body`."""
    flow = folder / f"{name}.flow"
    flow.write_text("use ext_bench as x\n\nflow " + name + "() {\n" + "\n".join(body) + "\n}\n")
    weft = [sys.executable, "-m", "weft.cli"]
    t0 = time.perf_counter()
    done = subprocess.run(
        [*weft, "run", flow.name, "--broker", broker], cwd=folder, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, last
    rid = done.stdout.split()[1]
    shown = json.loads(
        subprocess.run([*weft, "show", rid, "--json"], cwd=folder, env=env, capture_output=True, text=True).stdout
    )
    return shown["ended"] - shown["started"], took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="no-op steps and tasks (default 1000)")
    parser.add_argument("--calls", type=int, default=500, help="HTTP calls of 50 ms (default 500)")
    parser.add_argument("--concurrency", type=int, default=16, help="threads of each agent and worker (default 16)")
    args = parser.parse_args()
    print(f"before: {load()}")
    with tempfile.TemporaryDirectory(prefix="weft-bench-dist-") as tmp:
        folder = Path(tmp)
        redis = Redis(folder / "redis").start()
        env = dict(os.environ, WEFT_STORE=str(folder / "store"), BENCH_BROKER=redis.url, NO_PROXY="127.0.0.1")
        env.pop("WEFT_BROKER", None)
        (folder / "ext_bench.py").write_text(NOOP_ACTIONS)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        plain, agents = [], []
        try:
            plain = celery_workers(folder, env, args.concurrency)
            raw = celery_group(folder, redis.url, args.steps)
            for proc in plain:
                proc.terminate()
            agents = [
                Agent.start(redis.url, name, concurrency=args.concurrency, env=env, cwd=folder)
                for name in ("agent1", "agent2")
            ]
            for agent in agents:
                agent.ready(url=redis.url)
            fan = [f"    s{i:04d} = x.noop()" for i in range(args.steps)]
            run, command = weft_run(folder, env, redis.url, "fan", fan)
            print(f"{args.steps} no-op tasks, one Celery group, 2 workers x {args.concurrency} threads: {raw:.2f} s")
            print(
                f"{args.steps} no-op steps, weft run --broker, 2 agents x {args.concurrency} threads: "
                f"{run:.2f} s (the command: {command:.2f} s); ratio {run / raw:.2f}x (target < 2x)"
            )
            url = f"http://127.0.0.1:{server.server_port}/slow"
            calls = [f'    h{i:04d} = std.http.request(url: "{url}?n={i}")' for i in range(args.calls)]
            run, command = weft_run(folder, env, redis.url, "calls", calls)
            bound = args.calls * 0.05 / (2 * args.concurrency)
            print(
                f"{args.calls} HTTP calls of 50 ms on 2 agents x {args.concurrency} threads: {run:.2f} s "
                f"(the command: {command:.2f} s; {args.calls / run:.0f} calls/s; bound {bound:.2f} s)"
            )
        finally:
            for agent in agents:
                agent.stop()
            for proc in plain:
                proc.kill()
                proc.wait()
            server.shutdown()
            redis.stop()
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
