"""Live events: the store's feed followed as server-sent events, whichever process committed them.

A Watcher thread looks at the end of the feed every LOOK seconds and wakes
the streams waiting on it. The stream of all runs gives each event the id of
its place in the feed; the stream of one run gives the event's seq in that
run's history. Either way a client that reconnects with Last-Event-ID (or
`after`) gets what came after, nothing twice. The framework adds a comment
line as a heartbeat when nothing was sent for a while.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import anyio
from fastapi.sse import ServerSentEvent

from weft.client import Change, Client, NotFound
from weft.runtime.core.states import RUN_STOPPED

LOOK = 0.02  # seconds between looks at the feed's end
BATCH = 500  # changes read at a time
IDLE = 5.0  # seconds a stream waits for a change before it looks again anyway


class Disconnects:
    """ASGI middleware: a stream whose client went away ends quietly.

    When a client disconnects while an event is on its way, FastAPI's
    keep-alive task for server-sent events raises BrokenResourceError out of
    the request; the response is over by then, with nothing left to answer
    (uvicorn would log it with a traceback).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except* anyio.BrokenResourceError:
            if not started:
                raise


class Watcher:
    """Follows the end of a store's feed in one thread; streams await `changed(seen)`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.end = client.last_change()
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="weft-feed-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(LOOK):
            try:
                end = self.client.last_change()
            except Exception:  # a store that cannot be read now: streams wait, and their reads say why
                continue
            if end != self.end:
                self.end = end
                with self._guard:
                    waiting = list(self._waiting)
                for loop, event in waiting:
                    loop.call_soon_threadsafe(event.set)

    async def changed(self, seen: int, timeout: float = IDLE) -> None:
        """Return once the feed's end is past `seen`, or after `timeout` seconds."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._guard:
            self._waiting.add(entry)
        try:
            if self.end == seen:
                await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._guard:
                self._waiting.discard(entry)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def payload(c: Change) -> dict:
    return {"run": c.run_id, "run_state": c.run_state, "progress": c.progress, **asdict(c.event)}


async def all_runs(client: Client, watcher: Watcher, after: int | None) -> AsyncIterator[ServerSentEvent]:
    """Every run's events after feed place `after` (None: from now on), as they are committed.

    A place past the feed's end (a Last-Event-ID from a store since replaced) counts from its end, or the
    stream would wait for places that the new store reaches only after a while, and show nothing until then.
    """
    end = await asyncio.to_thread(client.last_change)  # the store's, never behind what a stream has sent
    place = end if after is None or after > end else after
    yield ServerSentEvent(comment="weft: every run's events", retry=1000)
    while True:
        seen = watcher.end
        page = await asyncio.to_thread(client.changes, place, BATCH)
        for c in page.items:
            yield ServerSentEvent(data=payload(c), id=str(c.place))
        if page.end == place:
            await watcher.changed(seen)
        place = page.end


async def one_run(client: Client, watcher: Watcher, run_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """Run `run_id`'s events after seq `after`, as they are committed; then an `end` event once it has stopped
    (or a `gone` event if it is deleted meanwhile: pruned)."""
    yield ServerSentEvent(comment=f"weft: run {run_id}", retry=1000)
    while True:
        seen = watcher.end
        try:
            state, found = await asyncio.to_thread(client.run_changes, run_id, after, BATCH)
        except NotFound:
            yield ServerSentEvent(event="gone", data={"run": run_id, "detail": "the run was deleted"}, id=str(after))
            return
        for c in found:
            yield ServerSentEvent(data=payload(c), id=str(c.event.seq))
            after = c.event.seq
        if not found:
            if state in RUN_STOPPED:
                yield ServerSentEvent(event="end", data={"run": run_id, "run_state": state}, id=str(after))
                return
            await watcher.changed(seen)
