"""One HTTP/1.1 connection as an asyncio.Protocol: a request written in one go, its response parsed by httptools.

A `Connection` carries one exchange at a time. `exchange` writes the request
and waits for the whole response, with no coroutine or stream per read: the
parser's callbacks fill the answer and settle one future. The body is bounded
(MAX_BODY, checked against Content-Length before it arrives and as it
arrives); a body with neither Content-Length nor chunked encoding ends when
the server closes. The timeout is one of inactivity, as httpx's read timeout:
the exchange fails when `timeout` seconds pass with nothing received.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

MAX_BODY = 16 * 1024 * 1024  # bytes of a response body, received or decoded


class Failure(Exception):
    """An exchange that did not end in a response; its message is one line, for the step's error."""


class TimedOut(Failure):
    def __init__(self) -> None:
        super().__init__("timed out")


class Closed(Failure):
    """The server closed the connection; `early` when it had sent nothing of the response (a kept connection the
    server dropped while idle, so the request may be sent again on a new one)."""

    def __init__(self, early: bool) -> None:
        super().__init__("the server closed the connection" + ("" if early else " before the end of its answer"))
        self.early = early


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-case, in the order received
    body: bytes


class Connection(asyncio.Protocol):
    """One connection to one origin; `exchange` one request at a time. `idle_since` is the pool's."""

    __slots__ = (
        "loop", "transport", "parser", "closed", "idle_since", "_waiter", "_head_only", "_tunnel",
        "_keep", "_status", "_headers", "_chunks", "_size", "_to_close", "_heard", "_timeout", "_timer",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future | None = None
        self._head_only = False
        self._tunnel: bytearray | None = None  # the answer to CONNECT, while it is awaited
        self._keep = False  # the last answer allows another request (the parser forgets it once the answer ends)
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []  # of the answer under way, made by `exchange`
        self._chunks: list[bytes] = self._headers
        self._size = 0
        self._to_close = False  # the body ends when the server closes
        self._heard = 0.0  # loop time of the last bytes received
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted again
            return
        self._heard = self.loop.time()
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._settle(Failure(f"the answer is not valid HTTP/1.1 ({e})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._to_close and self._status >= 200:
                self._complete()
            else:
                self._settle(Closed(early=not self._status and not self._size))

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._status = self.parser.get_status_code()
        if status < 200:
            return
        if self._head_only:
            self._complete()
            self.close()  # the parser would wait for the body a HEAD answer does not have
            return
        framed = False
        for name, value in self._headers:
            if name == b"content-length":
                framed = True
                if value.strip().isdigit() and int(value) > MAX_BODY:
                    self._too_large()
                    return
            elif name == b"transfer-encoding":
                framed = True
        self._to_close = not framed and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._too_large()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self._status, self._headers = 0, []
            return
        self._keep = self.parser.should_keep_alive()
        self._complete()

    # -- the exchange -------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout: float, head_only: bool = False) -> Reply:
        """Send `request` (head and body), return the whole response; Failure if there is none."""
        self._status, self._headers, self._chunks, self._size = 0, [], [], 0
        self._head_only, self._to_close, self._keep = head_only, False, False
        return await self._send(request, timeout)

    async def tunnel(self, request: bytes, timeout: float) -> int:
        """Send a CONNECT `request` to a proxy; the status of its answer (whose head has been read whole)."""
        self._tunnel = bytearray()
        try:
            return await self._send(request, timeout)
        finally:
            self._tunnel = None

    async def _send(self, request: bytes, timeout: float) -> Reply | int:
        """Write `request` and wait for what the parser answers (Failure after `timeout` s of silence)."""
        waiter = self._wait(timeout)
        self.transport.write(request)
        try:
            return await waiter
        finally:
            self._stop_timer()
            self._waiter = None

    def reusable(self) -> bool:
        return self._keep and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _wait(self, timeout: float) -> asyncio.Future:
        self._waiter = self.loop.create_future()
        self._timeout, self._heard = timeout, self.loop.time()
        self._timer = self.loop.call_at(self._heard + timeout, self._expire)
        return self._waiter

    def _expire(self) -> None:
        """Fail the exchange if nothing came for `timeout` seconds; else look again when that would be so."""
        if self._waiter is None or self._waiter.done():
            return
        due = self._heard + self._timeout
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._expire)
            return
        self._settle(TimedOut())
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Reply(self._status, self._headers, b"".join(self._chunks)))

    def _settle(self, failure: Failure) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(failure)

    def _too_large(self) -> None:
        self._settle(Failure(f"the response body is larger than {MAX_BODY >> 20} MiB, the most std.http reads"))
        self.close()

    def _tunnel_data(self, data: bytes) -> None:
        head = self._tunnel
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > 65536:
                self._settle(Failure("the proxy's answer to CONNECT has no end"))
                self.close()
            return
        if end + 4 != len(head):
            self._settle(Failure("the proxy sent data before the tunnel was open"))
            self.close()
            return
        line = bytes(head[: head.find(b"\r\n")]).split(b" ", 2)
        if len(line) < 2 or not line[0].startswith(b"HTTP/1.") or not line[1].isdigit():
            self._settle(Failure("the proxy's answer to CONNECT is not HTTP/1.1"))
            self.close()
            return
        self._waiter.set_result(int(line[1]))
