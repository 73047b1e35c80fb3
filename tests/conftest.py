"""Shared fixtures: the `weft` command run as a person runs it, against a store in a temp folder.

`weft` is a `Weft`: call it with the arguments of one command (a finished
process, checked for tracebacks and exit codes), `start` one in the
background, or `run` one whose first line names its run. Test modules that
need more (simulated services, side-effect files) subclass `Weft` and
override the fixture. `read_until` and `Output` follow a process's lines.
Also set here for every test: one bytecode cache for the processes tests
start, and the Hypothesis profile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Every `weft` process a test starts compiles Weft's modules to bytecode once per machine, not once per process:
# with PYTHONDONTWRITEBYTECODE set (it keeps __pycache__ out of the tree), each one would compile ~100 modules
# from source. The cache lives outside the tree, and Python checks each entry against its source file.
PYCACHE = os.path.join(tempfile.gettempdir(), f"weft-tests-pycache-{os.getuid()}")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", PYCACHE)
sys.dont_write_bytecode, sys.pycache_prefix = False, os.environ["PYTHONPYCACHEPREFIX"]
# Compiled plans and parse tables the tests' processes cache go to a folder of the tests', not the user's cache.
os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"weft-tests-cache-{os.getuid()}")

# Property tests judge their inputs, not this machine's speed: on a loaded machine (the suite runs on every core)
# example generation and examples themselves take longer, and neither is a failure.
settings.register_profile("weft", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("weft")

RUN_LINE = re.compile(r"run ([0-9A-Z]{26})")


def run_id(out: str) -> str:
    """The id of the run a command's first line (`run <id>`) names."""
    first = out.splitlines()[0] if out else ""
    found = RUN_LINE.fullmatch(first)
    assert found, first
    return found.group(1)


class Weft:
    """`weft` processes in one temporary folder, sharing the store `<folder>/store`."""

    timeout = 60.0

    def __init__(self, folder: Path) -> None:
        self.folder = self.tmp = Path(folder)
        self.store = str(self.folder / "store")
        self.env = dict(os.environ, WEFT_STORE=self.store)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "weft.cli", *args]

    def __call__(
        self, *args: str, ok: tuple = (0, 1, 2, 3), code: int | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        """Run one command to its end; no traceback, and its exit code is `code` (else one of `ok`)."""
        done = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.folder,
            timeout=timeout or self.timeout,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert not re.search(r"^Traceback", done.stdout, re.MULTILINE), done.stdout
        expected = ok if code is None else (code,)
        assert done.returncode in expected, (done.returncode, done.stdout, done.stderr)
        return done

    def start(self, *args: str, **options) -> subprocess.Popen:
        """Start one command in the background, its output on pipes."""
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **options}
        return subprocess.Popen(self.command(*args), env=self.env, cwd=self.folder, **options)

    def run(self, *args: str, **checks) -> tuple[str, subprocess.CompletedProcess]:
        """`weft run ARGS`: the run's id and the finished process."""
        done = self("run", *args, **checks)
        return run_id(done.stdout), done

    def show(self, run: str) -> dict:
        """What `weft show RUN --json` prints, read in this process (the same Client and view, no process)."""
        from weft.cli import views  # imported after the bytecode cache above is set up
        from weft.client import Client

        with Client(self.store) as client:
            return json.loads(json.dumps(views.run_json(client.get(run)), default=str))

    def cli_show(self, run: str) -> dict:
        """What a `weft show RUN --json` process prints."""
        return json.loads(self("show", run, "--json", code=0).stdout)

    def steps(self, run: str) -> dict[str, dict]:
        """The step records of a run, read from the store as it is now."""
        from weft.runtime.stores import open_store  # imported after the bytecode cache above is set up

        with open_store(self.store, create=False) as store, store.read() as t:
            return t.steps(run)


def read_until(proc: subprocess.Popen, text: str) -> str:
    """A process's output lines up to the first that contains `text` (read as they come)."""
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, seen + proc.stderr.read()
        seen += line
    return seen


class Output:
    """A process whose output lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """The first line matching `pattern`, waiting up to `timeout` seconds for it."""
        end = time.time() + timeout
        while time.time() < end:
            found = [x for x in self.lines if re.search(pattern, x)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")


@pytest.fixture
def weft(tmp_path) -> Weft:
    return Weft(tmp_path)
