"""The executor port over Celery: each task goes to an agent as one call; what agents say comes back through Redis.

The driver records "dispatched (step, attempt, call id)" in the store
before it submits a task here (`Task.call`), so a new owner of the run knows
the call and collects it (`attach`) instead of sending it again. One pump
thread per process does all the talking, every TICK seconds:

- sends the calls submitted since (as Celery task `weft.call`, its id the call
  id, to the task's queue or the default one);
- reads each run's report list: "started" (the agent that claimed the call),
  progress and log lines, "done" (its outcome is then read from Celery's result);
- every beat, looks at the heartbeats of the agents holding calls: a call
  whose agent is gone is sent again as a new call if its action is pure or idempotent,
  else it ends as lost (the step fails as interrupted, as after a local crash);
- cancels: a call the driver no longer wants is revoked and marked cancelled
  (the agent's `ctx.cancelled()` turns true); a call no agent took yet ends at once.

When Redis does not answer nothing is sent and nothing is given up: the
pump says so once, waits, and goes on when Redis is back. A beat finding a
new Redis server (a restart, maybe empty) waits three beats for agents to
write their claims and outcomes again, then sends again the calls nobody claims.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from weft.runtime.core.states import error_record
from weft.runtime.executors import celery_app as proto
from weft.runtime.executors.port import Outcome, Task, TaskChannel

TICK = 0.02  # seconds between the pump's rounds
RESEND_MAX = 600.0  # seconds, at most, between two sends of a call no agent claims
CURSORS = 10_000  # runs whose report lists' read positions are kept


@dataclass
class _Call:
    task: Task
    channel: TaskChannel
    sent: bool = False
    agent: str | None = None  # who claimed it
    resend_at: float = 0.0  # when to send it again if no agent claimed it by then (a message lost with its agent)
    resend_wait: float = 0.0
    done: bool = False  # its agent said "done": its outcome is to be read
    revoked: bool = False


class CeleryExecutor:
    """Sends tasks to Weft agents through the Celery broker `broker`; `remote` executors get tasks with call ids."""

    remote = True

    def __init__(self, broker: str, say: Any = None) -> None:
        self.broker = broker
        self.app = proto.make_app(broker)
        self.redis = proto.redis_of(broker)
        self.errors = proto.broker_errors()
        self._say = say or (lambda line: print(f"weft: {line}", file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._new: list[tuple[_Call, bool]] = []  # (call, attached): taken in by the pump's next round
        self._calls: dict[str, _Call] = {}  # call id -> call, owned by the pump thread
        self._unsent: list[_Call] = []
        self._check: list[_Call] = []  # calls to look up (claim, outcome) before anything else: attached ones
        self._cursors: dict[str, int] = {}  # run -> reports read
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._up = True
        self._up_since = time.monotonic()
        self._next_beat = 0.0
        self._server: str | None = None
        self._recheck_at: float | None = None  # after Redis restarted: when to send again what nobody claims
        self._thread = threading.Thread(target=self._pump, name="weft-celery", daemon=True)
        self._thread.start()

    @staticmethod
    def call_id() -> str:
        return uuid.uuid4().hex

    def submit(self, task: Task, channel: TaskChannel) -> None:
        self._enqueue(_Call(task, channel), attached=False)

    def attach(self, task: Task, channel: TaskChannel) -> None:
        """Collect call `task.call`, sent by a previous owner of the run: its outcome, or it is sent again."""
        self._enqueue(_Call(task, channel), attached=True)

    def _enqueue(self, call: _Call, attached: bool) -> None:
        with self._lock:
            self._new.append((call, attached))
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    # -- the pump -----------------------------------------------------------------------

    def _pump(self) -> None:
        backoff = TICK
        while not self._stop.is_set():
            try:
                self._round()
            except self.errors as e:
                if self._up:
                    self._say(
                        f"the broker {self.broker} does not answer ({type(e).__name__}: {e}); nothing is sent "
                        "until it does, nothing is lost"
                    )
                    self._up = False
                backoff = min(1.0, backoff * 2)
            else:
                if not self._up:
                    self._say(f"the broker {self.broker} answers again")
                    self._up, self._up_since = True, time.monotonic()
                backoff = TICK
            self._wake.wait(backoff)
            self._wake.clear()

    def _round(self) -> None:
        with self._lock:
            new, self._new = self._new, []
        for call, attached in new:
            self._calls[call.task.call] = call
            (self._check if attached else self._unsent).append(call)
        now = time.monotonic()
        if now >= self._next_beat:  # also with no call in flight: a restart of Redis is seen when it happens
            self._beat(now)
        if not self._calls:
            return
        self._read_reports()  # first: an attached call's "started" and log lines come before its outcome
        if self._check:
            self._look_up()
        if self._unsent:
            self._send()
        self._collect()
        self._cancel()

    def _send(self) -> None:
        with self.app.producer_or_acquire() as producer:
            while self._unsent:
                call = self._unsent[0]
                if call.task.call in self._calls:
                    task = call.task
                    self.app.send_task(
                        proto.CALL_TASK,
                        args=[task.to_data()],
                        task_id=task.call,
                        queue=task.queue or proto.DEFAULT_QUEUE,
                        producer=producer,
                        retry=False,
                    )
                    call.sent = True
                    call.resend_wait = call.resend_wait * 2 if call.resend_wait else 2 * proto.redeliver()
                    call.resend_at = time.monotonic() + min(RESEND_MAX, call.resend_wait)
                self._unsent.pop(0)

    def _read_reports(self) -> None:
        runs = sorted({call.task.run for call in self._calls.values()})
        pipe = self.redis.pipeline(transaction=False)
        for run in runs:
            pipe.lrange(proto.reports_key(run), self._cursors.get(run, 0), -1)
        for run, entries in zip(runs, pipe.execute(), strict=True):
            self._cursors[run] = self._cursors.pop(run, 0) + len(entries)  # (re)inserted last: the newest
            for entry in entries:
                call_id, kind, value, _ = msgpack.unpackb(entry)
                call = self._calls.get(call_id)
                if call is None:
                    continue  # a call of another owner's, or one already collected
                if kind == "started":
                    call.agent = value
                    call.channel.placed(call_id, value)
                elif kind == "progress":
                    call.channel.progress(value)
                elif kind == "log":
                    call.channel.log(value)
                elif kind == "done":
                    call.done = True
        while len(self._cursors) > CURSORS:  # forget the runs read longest ago (their lists expire in Redis)
            del self._cursors[next(iter(self._cursors))]

    def _collect(self) -> None:
        """Hand over the outcomes of the calls whose agents said "done"."""
        done = [call for call in self._calls.values() if call.done]
        for call, outcome in zip(done, self._outcomes(done), strict=True):
            if outcome is not None:
                self._finish(call, outcome)

    def _outcomes(self, calls: list[_Call]) -> list[Outcome | None]:
        if not calls:
            return []
        backend = self.app.backend
        raw = backend.client.mget([backend.get_key_for_task(call.task.call) for call in calls])
        found: list[Outcome | None] = []
        for value in raw:
            meta = None if value is None else backend.decode_result(value)
            ok = meta is not None and meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict)
            found.append(Outcome.from_data(meta["result"]) if ok else None)
        return found

    def _finish(self, call: _Call, outcome: Outcome) -> None:
        del self._calls[call.task.call]
        call.channel.finish(outcome)

    def _look_up(self) -> None:
        """For calls of unknown fate: take the outcome if there is one, follow the claim if there is one, else send."""
        calls, self._check = self._check, []
        claims = self.redis.mget([proto.claim_key(call.task.call) for call in calls])
        for call, outcome, holder in zip(calls, self._outcomes(calls), claims, strict=True):
            if outcome is not None:
                self._finish(call, outcome)
            elif holder is not None:
                call.sent, call.agent = True, holder.decode()
            elif call.task.call in self._calls:
                self._unsent.append(call)  # never sent, or Redis forgot it: the claim keeps it from running twice

    def _beat(self, now: float) -> None:
        every = proto.beat()
        self._next_beat = now + every
        server = self.redis.info("server")["run_id"]
        if self._server is not None and server != self._server:  # a new Redis: give agents time to say what they hold
            self._say(f"the broker {self.broker} restarted; calls nobody holds are sent again in {3 * every:g}s")
            self._recheck_at = now + 3 * every
            self._cursors.clear()
        self._server = server
        if self._recheck_at is not None and now >= self._recheck_at:
            self._recheck_at = None
            self._check.extend(call for call in self._calls.values() if call not in self._check)
            return
        if now - self._up_since < 3 * every or self._recheck_at is not None:
            return  # agents may not have beaten since Redis came back
        self._learn_holders(now)
        held = [call for call in self._calls.values() if call.agent is not None and not call.done]
        agents = sorted({call.agent for call in held})
        if not agents:
            return
        alive = dict(zip(agents, self.redis.mget([proto.agent_key(a) for a in agents]), strict=True))
        gone = [call for call in held if alive[call.agent] is None]
        for call, outcome in zip(gone, self._outcomes(gone), strict=True):
            if outcome is not None:
                self._finish(call, outcome)
            elif call.task.redoable:
                self._again(call)
            else:
                del self._calls[call.task.call]
                call.channel.lost(f"agent {call.agent} stopped answering while it ran call {call.task.call}")

    def _learn_holders(self, now: float) -> None:
        """Who claimed the sent calls no agent said "started" for (it may have died between the two); those
        nobody claimed for long are sent again, in case their message died with an agent before Redis recorded
        it as taken (the claim keeps a second copy from running: it is dropped)."""
        unknown = [call for call in self._calls.values() if call.sent and call.agent is None and not call.done]
        if unknown:
            for call, holder in zip(unknown, self.redis.mget([proto.claim_key(c.task.call) for c in unknown])):
                if holder is not None:
                    call.agent = holder.decode()
                elif now >= call.resend_at and not call.revoked:
                    self._unsent.append(call)

    def _again(self, call: _Call) -> None:
        """Send a redoable call whose agent died once more, as a new call."""
        del self._calls[call.task.call]
        again = _Call(replace(call.task, call=self.call_id()), call.channel)
        self._calls[again.task.call] = again
        self._unsent.append(again)

    def _cancel(self) -> None:
        """Revoke the calls the driver no longer wants; one no agent took yet ends now."""
        wanted_gone = [call for call in self._calls.values() if not call.revoked and call.channel.cancelled()]
        if not wanted_gone:
            return
        pipe = self.redis.pipeline(transaction=False)
        for call in wanted_gone:
            pipe.set(proto.cancel_key(call.task.call), 1, ex=proto.REPORTS_TTL)
        pipe.execute()
        self.app.control.revoke([call.task.call for call in wanted_gone])
        for call in wanted_gone:
            call.revoked = True
            if call.agent is None:
                error = error_record("Cancelled", f"call {call.task.call} was revoked before an agent took it")
                self._finish(call, Outcome(False, error=error))
