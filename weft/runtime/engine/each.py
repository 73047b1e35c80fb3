"""`each` steps: one sub-run of the body's Plan per item, at most `concurrency` at a time.

A sub-run is an ordinary run (its own record, lock, history, undo), linked to
its parent step by `run["parent"]` and the index entry that link makes. The
job is idempotent: run again (a retry, `resume`, recovery after a crash) it
finds the sub-runs it made, counts those that ended, resumes those that paused
or were left running, and makes only the missing ones. A failing item pauses
its own sub-run while the others go on; the step then fails naming them, so the
parent pauses, and resuming the parent resumes them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Callable

from weft.plan import expr
from weft.errors import WeftError
from weft.runtime.engine import session
from weft.runtime.core import steering
from weft.runtime.executors.threads import ThreadExecutor
from weft.runtime.core.states import RUN_ENDED, error_record
from weft.runtime.stores.lmdb.store import Store


class Each:
    """Everything one `each` step needs to make and drive its sub-runs."""

    def __init__(
        self,
        store: Store,
        parent: dict,
        spec: dict,
        items: list,
        captured: dict,
        driver: Callable[..., Any],
        workers: int,
    ) -> None:
        self.store = store
        self.parent = parent
        self.spec = spec
        self.items = items
        self.captured = captured
        self.driver = driver  # the Driver class: sub-runs are driven like any run
        self.workers = workers
        self.made: dict[int, str] = {}  # item index -> sub-run id
        self.labels: dict[int, str | None] = {}  # item index -> sub-run label

    def __call__(
        self,
        on_progress: Callable[[float], None] | None,
        on_log: Callable[[str], None] | None,
        cancel: threading.Event | None,
    ) -> tuple[bool, Any, float]:
        started = time.perf_counter()
        try:
            ok, payload = self._run(
                on_progress or (lambda f: None), on_log or (lambda s: None), cancel or threading.Event()
            )
        except (WeftError, expr.EvalError) as e:
            ok, payload = False, error_record("SubRunError", str(e))
        return ok, payload, time.perf_counter() - started

    def _run(
        self, progress: Callable[[float], None], log: Callable[[str], None], cancel: threading.Event
    ) -> tuple[bool, Any]:
        body = self.spec["each"]["plan"]
        limit = max(1, int(self.spec["each"]["concurrency"] or len(self.items) or 1))
        with self.store.read() as t:
            self.made = dict(t.children(self.parent["id"], self.spec["id"]))
            records = {i: t.run(rid) for i, rid in self.made.items()}
        self.labels = {i: r["label"] for i, r in records.items()}
        outcome: dict[int, tuple[str | None, str, str | None]] = {
            i: (r["id"], r["state"], None) for i, r in records.items() if r["state"] in RUN_ENDED
        }
        todo = [i for i in range(len(self.items)) if i not in outcome]
        pool = ThreadExecutor()
        running: dict[Future, int] = {}
        asked = False
        try:
            while todo or running:
                while todo and len(running) < limit and not cancel.is_set():
                    i = todo.pop(0)
                    running[pool.submit(self._drive_one, body, i, self.made.get(i))] = i
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                if cancel.is_set() and not asked:
                    asked = self._cancel_children(outcome)
                for future in done:
                    i = running.pop(future)
                    outcome[i] = rid, state, why = future.result()
                    log(
                        f"item {i + 1} of {len(self.items)}: "
                        + (f"run {rid} " if rid else "")
                        + state
                        + (f": {why}" if why else "")
                    )
                    progress(sum(o[1] == "succeeded" for o in outcome.values()) / max(1, len(self.items)))
        finally:
            pool.shutdown(wait=False)
        succeeded = sum(o[1] == "succeeded" for o in outcome.values())
        outputs = {"total": len(self.items), "succeeded": succeeded, "failed": len(self.items) - succeeded}
        if succeeded == len(self.items):
            return True, outputs
        if cancel.is_set():
            return False, error_record("Cancelled", f"cancelled with {succeeded} of {len(self.items)} sub-runs done")
        bad = [
            f"{self.labels.get(i) or f'item {i + 1}'} ({rid + ', ' if rid else ''}{state})"
            for i, (rid, state, _) in sorted(outcome.items())
            if state != "succeeded"
        ]
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        message = f"{len(bad)} of {len(self.items)} sub-runs did not succeed: {shown}"
        return False, error_record("SubRunsFailed", message)

    def _drive_one(self, body: dict, index: int, run_id: str | None) -> tuple[str | None, str, str | None]:
        """Make or take over sub-run `index` and drive it: (run id, final state, why not succeeded)."""
        try:
            return self._make_and_drive(body, index, run_id)
        except (WeftError, expr.EvalError) as e:  # its lock is held, another process drives it...
            return run_id, "not started" if run_id is None else "not driven", str(e)

    def _make_and_drive(self, body: dict, index: int, run_id: str | None) -> tuple[str | None, str, str | None]:
        if run_id is None:
            inputs = {self.spec["each"]["var"]: self.items[index], **self.captured}
            env = expr.Env(inputs)
            label = expr.show(expr.evaluate(body["label"], env)) if body.get("label") else None
            m, lease = session.create(
                self.store,
                body,
                inputs,
                user=self.parent["user"],
                label=label or f"{self.parent['label'] or self.parent['flow']} [{index + 1}]",
                locks=[expr.show(expr.evaluate(e, env)) for e in body.get("locks") or ()],
                parent={"run": self.parent["id"], "step": self.spec["id"], "index": index},
            )
            self.made[index] = m.run["id"]  # from now on a cancel reaches it
            self.labels[index] = m.run["label"]
        else:
            m, lease, _ = session.take(self.store, run_id, _resume_if_paused)
        if m.run["state"] not in ("running", "pending"):
            return m.run["id"], m.run["state"], m.run["error"]
        run = self.driver(self.store, m, lease, workers=self.workers).drive()
        return run["id"], run["state"], run["error"]

    def _cancel_children(self, outcome: dict) -> bool:
        def ask(t: Any) -> None:
            for i, rid in list(self.made.items()):
                if i not in outcome:
                    t.put_request(rid, "cancel", {"kind": "cancel", "by": f"run {self.parent['id']}"})

        self.store.write(ask)
        return True


def _resume_if_paused(m: Any, now: float) -> None:
    if m.run["state"] == "paused":
        steering.resume(m, now)
