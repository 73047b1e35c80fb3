"""A real `weft serve` process on a free loopback port, for the API, stream and browser tests.

    with Server(tmp_path, flows=[EXAMPLES / "foreman"]) as server:
        server.api.get("/api/v1/runs")            # httpx, with the operator token
        server.viewer.get(...)                    # with the viewer token
        server.anonymous.get(...)                 # with none
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ADDRESS = re.compile(r"console at (http://127\.0\.0\.1:\d+)/")


class Server:
    """`weft serve --port 0` in `folder` (store `<folder>/store`), read until it prints its address and tokens."""

    def __init__(self, folder: Path, *, flows: list[Path] = (), args: tuple[str, ...] = (), env: dict | None = None):
        self.folder = Path(folder)
        self.store = str(self.folder / "store")
        self.env = dict(os.environ, WEFT_STORE=self.store, **(env or {}))
        self.env.setdefault("WEFT_PROXY_STATE", str(self.folder / "proxy" / "state.json"))
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")]))
        flow_args = [a for f in flows for a in ("--flows", str(f))]
        self.command = [sys.executable, "-m", "weft.cli", "serve", "--port", "0", *flow_args, *args]
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self.lines = []
        self.process = subprocess.Popen(
            self.command,
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("weft serve: store"):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise AssertionError("weft serve did not start:\n" + "\n".join(self.lines))
        text = "\n".join(self.lines)
        self.url = ADDRESS.search(text).group(1)
        self.token = re.search(r"operator token (\S+)", text).group(1)
        self.viewer_token = re.search(r"viewer token (\S+)", text).group(1)
        self.api = self.http(self.token)
        self.viewer = self.http(self.viewer_token)
        self.anonymous = self.http(None)

    def http(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop the server (SIGTERM: a clean stop); its exit code. Output with a traceback fails the test."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code, self.process = self.process.returncode, None
        for c in (getattr(self, name, None) for name in ("api", "viewer", "anonymous")):
            if c is not None:
                c.close()
        if sig == signal.SIGTERM:
            assert not any("Traceback" in line for line in self.lines), "\n".join(self.lines)
        return code

    def wait_for(self, run_id: str, states: tuple[str, ...], timeout: float = 30.0) -> dict:
        """The run (GET /api/v1/runs/ID) once its state is one of `states`."""
        end = time.monotonic() + timeout
        while True:
            run = self.api.get(f"/api/v1/runs/{run_id}").json()
            if run.get("state") in states or time.monotonic() > end:
                assert run.get("state") in states, run
                return run
            time.sleep(0.05)
