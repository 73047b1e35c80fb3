"""The transport under std.http's httpx.AsyncClient: HTTP/1.1 on asyncio streams (parsed by h11), idle connections kept per origin.

httpx's own pool (httpcore) looks at every connection it holds for every
request it starts or ends, so n concurrent requests cost n² (500 concurrent
calls took 10 s here); this one takes and gives back an idle connection in
O(1). A connection kept idle that the server has closed meanwhile is
replaced once. Bodies are read whole (the action returns them whole);
proxies are not used (std.http takes httpx's transport when one is set).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import defaultdict

import h11
import httpx

KEEP = 1000  # idle connections kept per origin
_Origin = tuple[bytes, bytes, int]


class Pool(httpx.AsyncBaseTransport):
    """An httpx transport over asyncio streams; one per client, used from the loop that made it."""

    def __init__(self) -> None:
        self._idle: defaultdict[_Origin, list[_Connection]] = defaultdict(list)
        self._tls: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout", {})
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()
            try:
                return await self._exchange(origin, connection, request, timeouts)
            except _Stale:
                continue  # closed by the server while idle: try the next one, or a new one
        connection = await self._connect(origin, request, timeouts.get("connect"))
        try:
            return await self._exchange(origin, connection, request, timeouts)
        except _Stale as e:
            raise httpx.RemoteProtocolError("the server closed the connection", request=request) from e

    async def _connect(self, origin: _Origin, request: httpx.Request, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == b"https":
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host.decode("ascii"), port, ssl=tls, limit=1 << 20)
        except TimeoutError as e:
            raise httpx.ConnectTimeout("timed out", request=request) from e
        except OSError as e:  # asyncio's "Connect call failed" names no reason: the errno does
            reason = os.strerror(e.errno) if isinstance(e.errno, int) and e.errno > 0 else e.strerror or str(e)
            raise httpx.ConnectError(f"{reason} ({host.decode('ascii')}:{port})", request=request) from e
        return _Connection(reader, writer)

    async def _exchange(
        self, origin: _Origin, connection: _Connection, request: httpx.Request, timeouts: dict
    ) -> httpx.Response:
        try:
            response = await connection.exchange(request, timeouts.get("read"))
        except BaseException:
            connection.close()
            raise
        if connection.reusable() and len(self._idle[origin]) < KEEP:
            self._idle[origin].append(connection)
        else:
            connection.close()
        return response

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _Stale(Exception):
    """A kept connection that the server closed before answering anything."""


class _Connection:
    """One HTTP/1.1 connection: one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = False

    async def exchange(self, request: httpx.Request, timeout: float | None) -> httpx.Response:
        """Send `request`, read its whole response."""
        fresh, self.used = not self.used, True
        conn = self.h11
        body = await request.aread()
        data = conn.send(h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(timeout):
                self.writer.write(data)
                await self.writer.drain()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        chunk = await self.reader.read(1 << 16)
                        if not chunk and head is None and not fresh:
                            raise _Stale()
                        conn.receive_data(chunk)
                    elif isinstance(event, h11.Response):
                        head = event
                    elif isinstance(event, h11.Data):
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        raise httpx.RemoteProtocolError("the server closed the connection", request=request)
        except TimeoutError as e:
            raise httpx.ReadTimeout("timed out", request=request) from e
        except (ConnectionError, BrokenPipeError) as e:
            if head is None and not fresh:
                raise _Stale() from e
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        except h11.ProtocolError as e:
            raise httpx.RemoteProtocolError(str(e), request=request) from e
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            content=b"".join(chunks),
            extensions={"http_version": b"HTTP/" + head.http_version, "reason_phrase": head.reason},
            request=request,
        )

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    def close(self) -> None:
        self.writer.close()
