"""`weft worker`: the long-running service that drives the runs of a store (see weft.runtime.engine.worker).

SIGTERM or SIGINT stops it cleanly (a second one cuts the grace short); it
exits 0 once every run it drove is finished with or handed back.

Its log has one line per change that matters. A run let go between the polls
of its polling steps says so only at the debug level (`--verbose`, or
WEFT_LOG=debug); a run that waits for a signal says so once.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from functools import partial
from typing import Any

from weft.cli.views import clock, duration, event_text
from weft.client.redact import Redactor
from weft.errors import WeftError
from weft.runtime.core.states import RUN_ENDED
from weft.runtime.engine.driver import Driver
from weft.runtime.engine.worker import DEFAULT_RUNS, Notice, Worker
from weft.runtime.executors.celery import CeleryExecutor
from weft.runtime.executors.celery_app import broker_url
from weft.runtime.stores import open_store, store_dir

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """`30`, `30s`, `1.5m` or `1h` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text)
    if match is None:
        raise WeftError(f"--grace expects a time such as 30s, 2m or 1h, not {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def serve(args: Any) -> int:
    if args.workers is not None and args.workers < 1:
        raise WeftError(f"--workers must be at least 1, not {args.workers}")
    if args.concurrency is not None and args.concurrency < 1:
        raise WeftError(f"--concurrency must be at least 1, not {args.concurrency}")
    grace = seconds(args.grace)
    broker = broker_url(args.broker)
    with open_store(store_dir(args.store), create=True) as store:
        log = Log(store.path, grace, debug=args.verbose or os.environ.get("WEFT_LOG", "").lower() == "debug")
        executor = None if broker is None else CeleryExecutor(broker)
        worker = Worker(
            store,
            partial(Driver, concurrency=args.concurrency),
            runs=args.workers or DEFAULT_RUNS,
            grace=grace,
            once=args.once,
            observer=log,
            executor=executor,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):  # the handler only counts and wakes: it can never block
            signal.signal(sig, lambda *_: worker.signalled())
        if not worker.serve():
            # steps still run in threads whose leases were dropped: leave now, without touching the store again
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return 0


class Log:
    """One flushed line per notice that matters: runs starting and ending, failures, take-overs.

    A "waits" notice is a line of its own only when the signals a run waits for
    changed since its last one; with `debug`, every one (a run with polling steps
    is let go after each poll).
    """

    def __init__(self, path: str, grace: float, debug: bool = False) -> None:
        self.path = path
        self.grace = grace
        self.debug = debug
        self._waits: dict[str, tuple[str, ...]] = {}  # run -> the signals its last "waits" line named
        self._lock = threading.Lock()

    def __call__(self, n: Notice) -> None:
        if not (self.debug or self._news(n)):
            return
        for t, text in self._lines(n):
            with self._lock:
                sys.stdout.write(f"{clock(t)} {text}\n")
                sys.stdout.flush()

    def _news(self, n: Notice) -> bool:
        """Whether a notice is news at the default level: not a run let go again for the same reason."""
        if n.kind == "events" and n.run["state"] in RUN_ENDED:
            self._waits.pop(n.run_id, None)
        if n.kind != "waits":
            return True
        with self._lock:
            before = self._waits.get(n.run_id)
            self._waits[n.run_id] = n.names
        return bool(n.names) and n.names != before

    def _lines(self, n: Notice) -> list[tuple[float, str]]:
        me, run = f"worker {os.getpid()}", f"run {n.run_id}"
        if n.kind == "events":
            hide = Redactor(n.run)  # a secret in an error never reaches the worker's output
            lines = ((e["t"], _event_line(n.run, hide.event(e))) for e in n.events)
            return [(t, f"{run} {text}") for t, text in lines if text is not None]
        text = {
            "serving": lambda: f"{me} serving {self.path} ({n.count} runs at once)",
            "not claimed": lambda: f"{run} not claimed: {n.error}",
            "handed back": lambda: f"{run} handed back to the queue (worker stopping)",
            "waits": lambda: (
                f"{run} "
                + (f"waits for signal {', '.join(n.names)}" if n.names else "waits")
                + (f", back at {clock(n.when)}" if n.when is not None else "")
            ),
            "lost": lambda: f"{run} let go: {n.error}",
            "failed": lambda: f"{run} stopped: {n.error}",
            "trouble": lambda: f"{me}: {n.error}",
            "stopping": lambda: f"{me} stopping: {n.count} run(s) finish their running steps (grace {self.grace:g}s)",
            "cut short": lambda: (
                f"{run} let go with step(s) {', '.join(n.names)} still running: the next owner recovers them"
            ),
            "stopped": lambda: f"{me} stopped",
        }[n.kind]()
        return [(n.t, text)]


def _event_line(run: dict, e: dict) -> str | None:
    """What the log says about one history event, or None when it does not matter."""
    if "log" in e:
        return None
    if "note" in e:
        return f"step {e['step']}: {e['note']}" if e.get("step") else e["note"]
    state, detail = e["state"], e.get("detail")
    if "step" in e:
        retry = state == "pending" and (detail or "").startswith("retry")
        signalled = state == "succeeded" and (detail or "").startswith("signal")
        if state in ("failed", "undo failed", "suspended") or retry or signalled:
            return "step " + event_text(e)
        return None
    if state == "running":
        return f"{run['flow']} " + (f"running ({detail})" if detail else "started")
    if state in RUN_ENDED and not detail:
        took = duration(run["started"], run["ended"])
        return f"{run['flow']} {state}" + (f" in {took}" if took else "")
    return f"{run['flow']} {state}" + (f": {detail}" if detail else "")
