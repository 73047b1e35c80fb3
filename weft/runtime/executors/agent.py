"""`weft agent`: a Celery worker that runs Weft's action calls on this host, for orchestrators elsewhere.

An agent needs no store; it runs each call on its local executor (threads
for plain actions, one event loop for `async def` ones), as `weft run` does. For each call it receives it claims the call
(SET NX of its claim key, see celery_app.py) before calling the action, so a
second delivery of the same call is dropped whoever holds the claim; it
reports "started", progress and log lines on the run's report list while the
action runs, stores the Outcome as Celery's result of the call (retrying
until Redis takes it), then reports "done". A thread beats every `beat()`
seconds: the agent's heartbeat key, the cancel keys of its running calls
(and Celery's revokes) turned into `ctx.cancelled()`, and, when Redis comes
back empty (a restart without persistence), the claims of the calls it runs
and the outcomes it finished lately are written again.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import msgpack

from weft.runtime.executors import celery_app as proto
from weft.runtime.executors.local import LocalExecutor
from weft.runtime.core.states import error_record
from weft.runtime.executors.port import Outcome, Task

KEEP_RECENT = 600.0  # seconds a finished call's outcome is kept here, to store again if Redis forgets it


@dataclass
class _Running:
    run: str
    cancel: threading.Event = field(default_factory=threading.Event)


class Agent:
    """Serves the Celery queues `queues` of `broker` with `concurrency` threads, as agent `name`."""

    def __init__(self, broker: str, queues: list[str], concurrency: int, name: str | None = None) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.broker = broker
        self.queues = queues
        self.concurrency = concurrency
        self.app = proto.make_app(broker)
        self.redis = proto.redis_of(broker)
        self.errors = proto.broker_errors()
        self.local = LocalExecutor()
        self.running: dict[str, _Running] = {}
        self.recent: dict[str, tuple[str, dict, float]] = {}  # call -> (run, outcome data, when it ended)
        self._stop = threading.Event()
        self._server: str | None = None  # Redis's run_id: a new one means it restarted, maybe empty

        def call(request: Any, data: dict) -> None:
            self._call(request.request.id, data)

        self.app.task(name=proto.CALL_TASK, bind=True)(call)

    # -- serving ------------------------------------------------------------------------

    def serve(self, ready: Any = None) -> None:
        """Run the Celery worker until it is told to stop; `ready()` is called once it consumes."""
        from celery.exceptions import SecurityWarning
        from celery.signals import worker_ready

        def on_ready(**_: Any) -> None:
            threading.Thread(target=self._beat_loop, name="weft-agent-beat", daemon=True).start()
            if ready is not None:
                ready()

        worker_ready.connect(on_ready, weak=False)
        warnings.filterwarnings("ignore", category=SecurityWarning)  # about pickle as root: calls travel as msgpack
        worker = self.app.Worker(
            pool="threads",
            concurrency=self.concurrency,
            queues=self.queues,
            hostname=f"{self.name}@{socket.gethostname()}",
            loglevel="WARNING",
            quiet=True,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        try:
            worker.start()
        finally:
            self._stop.set()

    # -- one call -----------------------------------------------------------------------

    def _call(self, call: str, data: dict) -> None:
        from celery.exceptions import Ignore

        try:
            task = Task.from_data(data)
        except TypeError as e:  # sent by an orchestrator of another version: say so as the call's outcome
            error = error_record("AgentError", f"agent {self.name} cannot read call {call}: {e}")
            self._until_answered(lambda: self._store(str(data.get("run")), call, Outcome(False, error=error).to_data()))
            return
        claimed, unwanted = self._until_answered(lambda: self._claim(call))
        if not claimed:
            raise Ignore()  # delivered again: it runs (or ran) elsewhere, or its agent died and the call is lost
        if unwanted:  # cancelled while it waited in the queue (the revoke reached this agent after the message)
            error = error_record("Cancelled", f"call {call} was cancelled before agent {self.name} took it")
            self._until_answered(lambda: self._store(task.run, call, Outcome(False, error=error).to_data()))
            return
        held = self.running[call] = _Running(task.run)
        try:
            self._report(task.run, call, "started", self.name)
            channel = _Channel(self, task.run, call, held.cancel)
            self.local.submit(task, channel)  # plain actions in threads, `async def` ones on one event loop
            outcome = channel.outcome()
        finally:
            del self.running[call]
        result = outcome.to_data()
        self.recent[call] = (task.run, result, time.time())
        self._until_answered(lambda: self._store(task.run, call, result))

    def _claim(self, call: str) -> tuple[bool, bool]:
        """Claim `call` (one round trip); whether it was claimed here, and whether it is already cancelled."""
        from celery.worker import state

        pipe = self.redis.pipeline(transaction=False)
        claimed, cancelled = (
            pipe.set(proto.claim_key(call), self.name, nx=True, ex=proto.CLAIM_TTL)
            .exists(proto.cancel_key(call))
            .execute()
        )
        return bool(claimed), bool(cancelled) or call in state.revoked

    def _store(self, run: str, call: str, result: dict) -> bool:
        self.app.backend.store_result(call, result, "SUCCESS")
        self._report(run, call, "done", None, best_effort=False)
        return True

    def _until_answered(self, attempt: Any) -> Any:
        """`attempt()`, again every half second while Redis does not answer (the call's outcome must not be lost)."""
        while True:
            try:
                return attempt()
            except self.errors:
                time.sleep(0.5)

    def _report(self, run: str, call: str, kind: str, value: Any, best_effort: bool = True) -> None:
        """Append what call `call` said to its run's report list; progress and log lines are dropped if Redis is down."""
        key = proto.reports_key(run)
        entry = msgpack.packb([call, kind, value, time.time()])
        try:
            self.redis.pipeline(transaction=False).rpush(key, entry).expire(key, proto.REPORTS_TTL).execute()
        except self.errors:
            if not best_effort:
                raise

    # -- the beat -----------------------------------------------------------------------

    def _beat_loop(self) -> None:
        every = proto.beat()
        while not self._stop.wait(0 if self._server is None else every):
            try:
                self._beat(every)
            except self.errors:
                continue  # Redis is down: the orchestrators see no beat either; Celery reconnects on its own
            except Exception as e:  # noqa: BLE001 - the beat must go on: report and keep beating
                print(f"weft agent {self.name}: heartbeat: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def _beat(self, every: float) -> None:
        from celery.worker import state

        server = self.redis.info("server")["run_id"]
        restarted = self._server is not None and server != self._server
        self._server = server
        calls = list(self.running)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(proto.agent_key(self.name), self.name, ex=max(1, round(3 * every + 0.5)))
        for call in calls:
            pipe.exists(proto.cancel_key(call))
        answers = pipe.execute()[1:]
        for call, wanted in zip(calls, answers, strict=True):
            held = self.running.get(call)
            if held is not None and (wanted or call in state.revoked):
                held.cancel.set()
        now = time.time()
        for call in [c for c, (_, _, ended) in self.recent.items() if now - ended > KEEP_RECENT]:
            del self.recent[call]
        if restarted:  # what Redis forgot: who holds the running calls, and the outcomes not collected yet
            for call in list(self.running):
                self.redis.set(proto.claim_key(call), self.name, ex=proto.CLAIM_TTL)
            for call, (run, result, _) in list(self.recent.items()):
                self.redis.set(proto.claim_key(call), self.name, ex=proto.CLAIM_TTL)
                self._store(run, call, result)


class _Channel:
    """A call's channel on the agent: progress and log lines go to the run's report list; `outcome()` waits for
    the call's end."""

    def __init__(self, agent: Agent, run: str, call: str, cancel: threading.Event) -> None:
        self._agent = agent
        self._run = run
        self._call = call
        self._cancel = cancel
        self._ended = threading.Event()
        self._outcome: Outcome | None = None

    def finish(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._ended.set()

    def outcome(self) -> Outcome:
        self._ended.wait()
        return self._outcome

    def progress(self, fraction: float) -> None:
        self._agent._report(self._run, self._call, "progress", fraction)

    def log(self, line: str) -> None:
        self._agent._report(self._run, self._call, "log", line)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, seconds: float) -> bool:
        return self._cancel.wait(max(0.0, seconds))
