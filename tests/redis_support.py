"""A real Redis and real `weft agent` processes for the distributed tests and the benchmark.

`Redis` runs Debian's `redis-server` on a free loopback port without persistence
(`--save "" --appendonly no`), and can be stopped and started again on the same
port (the "Redis is down for a while" test). `Agent` is one `weft agent`
process: started in its own process group, ready once it printed its `agent
NAME ready: ...` line, stopped with SIGTERM (it must exit cleanly) or killed
with SIGKILL, group and all, as a machine that dies takes its pool with it.

The `redis` fixture skips its tests, with the reason, where `redis-server` is
not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Output

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
HEARTBEAT = "0.5"  # seconds between an agent's heartbeats ($WEFT_HEARTBEAT); a call is lost after 3 missed ones
REDELIVER = "2"  # seconds before Redis gives a call that a dead agent took, unclaimed, to another ($WEFT_REDELIVER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """One `redis-server` on 127.0.0.1, its files in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Redis:
        """Start the server (on the same port as before, after a `stop`) and wait until it answers PING."""
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.folder), "--loglevel", "warning", "--daemonize", "no"]
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while not ping(self.port):
            assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
            assert time.monotonic() < end, f"redis-server on port {self.port} did not answer PING"
            time.sleep(0.02)
        return self

    def summary(self) -> dict[str, object]:
        """What the server holds, for a failing test's message: its keys by kind, queue lengths, unacked calls."""
        import redis as client  # the package, not the fixture below

        r = client.Redis(port=self.port, socket_timeout=2)
        try:
            keys = sorted(k.decode() for k in r.keys("*"))
            kinds: dict[str, int] = {}
            for k in keys:
                kinds[k.rsplit(":", 1)[0]] = kinds.get(k.rsplit(":", 1)[0], 0) + 1
            lists = {k: r.llen(k) for k in keys if r.type(k) == b"list"}
            return {"kinds": kinds, "lists": lists, "unacked": r.hlen("unacked"), "agents": r.keys("weft:agent:*")}
        except client.exceptions.RedisError as e:
            return {"error": str(e)}
        finally:
            r.close()

    def stop(self) -> None:
        """Shut the server down (SIGTERM; SIGKILL if it lingers); everything it held is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Agent:
    """One `weft agent` process serving `queues` of the broker at `url`."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.output = Output(proc)

    @classmethod
    def start(
        cls,
        url: str,
        name: str,
        *,
        queues: tuple[str, ...] = (),
        concurrency: int | None = None,
        env: dict[str, str],
        cwd: Path,
    ) -> Agent:
        """Start `weft agent --broker URL --name NAME [--queue Q]... [--concurrency N]` (not waiting for it)."""
        argv = [sys.executable, "-m", "weft.cli", "agent", "--broker", url, "--name", name]
        for q in queues:
            argv += ["--queue", q]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        log = Path(cwd) / f"agent-{name}-{time.monotonic_ns()}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**env, "TEST_AGENT_NAME": name},
                cwd=cwd,
                start_new_session=True,  # its own process group: a SIGKILL takes its pool processes with it
            )
        return cls(name, proc, log)

    def ready(self, queues: tuple[str, ...] = ("weft",), url: str = "", timeout: float = 30.0) -> Agent:
        """Wait for the agent's ready line and check that it names its queues and broker; returns the agent."""
        end = time.monotonic() + timeout
        while (found := self.ready_line()) is None:
            if not self.alive() or time.monotonic() > end:
                self.kill()
                raise AssertionError(f"agent {self.name} not ready (exit {self.proc.poll()}): {self.errors()}")
            time.sleep(0.02)
        served, broker = found.groups()
        assert set(served.split(", ")) == set(queues) and broker.startswith(url), found.group(0)
        return self

    def ready_line(self) -> re.Match | None:
        """The agent's `agent NAME ready: queues Q, ... on URL` line, once it printed it."""
        ready = re.compile(rf"^agent {re.escape(self.name)} ready: queues? (.+) on (\S+)$")
        return next((m for m in map(ready.match, self.output.lines) if m), None)

    def errors(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` (SIGTERM or SIGINT), and the exit code once it stopped (cleanly: no traceback)."""
        if self.alive():
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"agent {self.name} did not stop on signal {sig} within {timeout}s") from None
        _end_group(self.proc.pid)
        assert "Traceback" not in self.errors(), self.errors()
        return code

    def kill(self) -> None:
        """SIGKILL the agent and every process of its group, as when its machine dies."""
        _end_group(self.proc.pid)
        self.proc.wait()


def _end_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def redis(tmp_path) -> Redis:
    """A Redis of the test's own, stopped at its end."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"{REDIS_SERVER} is not installed (Debian package redis-server; .ci/run installs it)")
    server = Redis(tmp_path / "redis").start()
    yield server
    server.stop()
