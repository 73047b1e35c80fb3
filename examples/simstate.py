"""Plumbing shared by the simulated services of the examples (Foreman proxy, Katello).

Each service keeps its state in one JSON file, changed under an exclusive
`fcntl` lock and replaced atomically, because concurrent steps (threads and,
after a restart, other processes) call it at once. Each has a *fail switch*
for trying Weft's error handling from the shell, and a little random latency
so that concurrent steps visibly overlap.

For a service with prefix `WEFT_PROXY` and default folder `.weft-proxy`:

    WEFT_PROXY_STATE=path/state.json   where the state lives (default ./.weft-proxy/state.json)
    WEFT_PROXY_FAIL=entry,entry        every matching call fails while this is set
    <state folder>/fail                one entry per line, each consumed by the one call it fails
    WEFT_PROXY_LATENCY=0.5             scale the simulated latency (0 turns it off)

An entry is `action` (any call of that action) or `action:value` (only calls
with an argument equal to `value`: `dns_create:PTR`, `dhcp_reserve:52:54:00:00:00:07`).
Blank lines and lines starting with `#` in the fail file are ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from weft.sdk.actions import ActionFailed


class Service:
    """A simulated remote service: state file, lock, fail switch and latency."""

    def __init__(self, prefix: str, default_folder: str, latency: tuple[float, float] = (0.05, 0.15)) -> None:
        self.prefix = prefix
        self.default_folder = default_folder
        self.latency_range = latency

    # The environment is read on every call, so a test (or a shell) can change it.
    def state_path(self) -> str:
        return os.path.abspath(
            os.environ.get(f"{self.prefix}_STATE") or os.path.join(self.default_folder, "state.json")
        )

    def folder(self) -> str:
        return os.path.dirname(self.state_path())

    def fail_file(self) -> str:
        return os.path.join(self.folder(), "fail")

    def latency(self, scale: float = 1.0) -> None:
        """Sleep like a network round trip (scaled by `<PREFIX>_LATENCY`)."""
        try:
            factor = float(os.environ.get(f"{self.prefix}_LATENCY", "1"))
        except ValueError:
            factor = 1.0
        if factor > 0:
            time.sleep(random.uniform(*self.latency_range) * factor * scale)

    @contextmanager
    def transaction(self, action: str, args: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Call `action`: wait a round trip, then hold the lock, apply the fail switch and yield the state.

        The state (a dict) is written back when the block ends without an
        exception and changed it; an exception leaves the file as it was.
        """
        self.latency()
        with self._locked():
            self._apply_fail_switch(action, args)
            state = self._load()
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                self._save(state)

    def read(self) -> dict[str, Any]:
        """The current state, for inspection (tests, a curious shell)."""
        with self._locked():
            return self._load()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        folder = self.folder()
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    # -- the fail switch ---------------------------------------------------------------

    def _apply_fail_switch(self, action: str, args: Mapping[str, Any]) -> None:
        env = os.environ.get(f"{self.prefix}_FAIL", "")
        for entry in env.split(","):
            if _matches(entry.strip(), action, args):
                raise ActionFailed(f"{action} failed (simulated: {self.prefix}_FAIL={env})")
        path = self.fail_file()
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        for i, line in enumerate(lines):
            entry = line.strip()
            if entry and not entry.startswith("#") and _matches(entry, action, args):
                rest = lines[:i] + lines[i + 1 :]
                if any(x.strip() and not x.strip().startswith("#") for x in rest):
                    _atomic_write(path, "".join(x + "\n" for x in rest))
                else:
                    os.unlink(path)
                raise ActionFailed(f"{action} failed (simulated: '{entry}' from {path}, used up)")

    # -- the state file ------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        path = self.state_path()
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ActionFailed(f"cannot read the simulated service state {path}: {e}") from e
        if not isinstance(state, dict):
            raise ActionFailed(f"the simulated service state {path} is not a JSON object")
        return state

    def _save(self, state: dict[str, Any]) -> None:
        _atomic_write(self.state_path(), json.dumps(state, indent=2, sort_keys=True) + "\n")


def _matches(entry: str, action: str, args: Mapping[str, Any]) -> bool:
    if not entry:
        return False
    name, sep, value = entry.partition(":")
    if name.strip() != action:
        return False
    return not sep or any(str(v) == value.strip() for v in args.values())


def _atomic_write(path: str, text: str) -> None:
    temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
