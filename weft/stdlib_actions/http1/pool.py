"""Connections kept per origin on one event loop, and how new ones are made (TCP, TLS, a proxy's tunnel).

An `Origin` names where a connection goes: the server's scheme, host and
port, and the proxy it goes through (None: straight there). `Pool.send` takes
the most recently used idle connection of its origin in O(1), or opens one;
at most KEEP idle connections are kept per origin, none idle longer than
IDLE seconds (looked at when the origin is used again). When a kept
connection turns out closed by the server before it answered anything, the
request is sent again on the next kept one, or on a new connection; a new
connection is not tried twice.

A name is looked up once for all the connections being opened to it at that
moment (10,000 calls starting at once ask the resolver once); IP addresses
are not looked up. https is TLS through the ssl module with the system's
certificate authorities (SSL_CERT_FILE and SSL_CERT_DIR are honoured),
verification on. Through a proxy, https goes in a CONNECT tunnel.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import ssl
import time
from collections import deque
from typing import NamedTuple

from weft.stdlib_actions.http1.wire import Closed, Connection, Failure, Reply, TimedOut

KEEP = 1000  # idle connections kept per origin
IDLE = 5.0  # seconds a connection may stay idle and still be used (as httpx's keep-alive expiry)


class Proxy(NamedTuple):
    host: str
    port: int
    auth: str | None  # "user:password" from the proxy's URL


class Origin(NamedTuple):
    scheme: str  # "http" or "https"
    host: str
    port: int
    proxy: Proxy | None


class Pool:
    """The connections of one event loop (the one that first uses it)."""

    def __init__(self) -> None:
        self._idle: dict[Origin, deque[Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._resolving: dict[tuple[str, int], asyncio.Future] = {}
        self._literals: dict[tuple[str, int], list[tuple]] = {}  # IP addresses met, as _resolve gives them

    async def send(self, origin: Origin, request: bytes, timeout: float, head_only: bool = False) -> Reply:
        """The response to `request` (its head and body, as bytes) sent to `origin`."""
        idle = self._idle.get(origin)
        while True:
            connection = None
            while idle:
                kept = idle.pop()
                if not kept.closed and time.monotonic() - kept.idle_since <= IDLE:
                    connection = kept
                    break
                kept.close()
            fresh = connection is None
            if fresh:
                connection = await self._connect(origin, timeout)
            try:
                reply = await connection.exchange(request, timeout, head_only)
            except Closed as e:
                connection.close()
                if e.early and not fresh:  # a kept one the server closed while idle: the next one, or a new one
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            self._keep(origin, connection)
            return reply

    def _keep(self, origin: Origin, connection: Connection) -> None:
        """Keep `connection` idle for the next request to `origin`, or close it."""
        if connection.reusable():
            idle = self._idle.get(origin)
            if idle is None:
                idle = self._idle[origin] = deque()
            if len(idle) < KEEP:
                connection.idle_since = time.monotonic()
                idle.append(connection)
                while idle[0].closed or connection.idle_since - idle[0].idle_since > IDLE:
                    idle.popleft().close()
                return
        connection.close()

    async def _connect(self, origin: Origin, timeout: float) -> Connection:
        """A new connection to `origin`, its TLS (and a proxy's tunnel) set up, within `timeout` seconds.

        The deadline is a timer that cancels this task, as asyncio.timeout's is, without its context manager
        (a third of the Python cost of opening a connection)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        cancelling = task.cancelling()
        expired: list[bool] = []
        timer = loop.call_at(loop.time() + timeout, _expire, task, expired)
        try:
            return await self._open(loop, origin, timeout)
        except asyncio.CancelledError:
            if expired and task.uncancel() <= cancelling:
                raise TimedOut() from None
            raise
        except ssl.SSLCertVerificationError as e:
            where = _netloc(origin.host, origin.port)
            raise Failure(f"TLS certificate of {where} not accepted: {e.verify_message}") from None
        except ssl.SSLError as e:
            raise Failure(f"TLS with {_netloc(origin.host, origin.port)} failed: {e.reason or e}") from None
        finally:
            timer.cancel()

    async def _open(self, loop: asyncio.AbstractEventLoop, origin: Origin, timeout: float) -> Connection:
        proxy = origin.proxy
        host, port = (proxy.host, proxy.port) if proxy else (origin.host, origin.port)
        tls = self._context() if origin.scheme == "https" else None
        failure: OSError | None = None
        for family, address in self._literals.get((host, port)) or await self._resolve(host, port):
            try:
                _, connection = await loop.create_connection(
                    lambda: Connection(loop),
                    address[0],
                    address[1],
                    family=family,
                    ssl=tls if proxy is None else None,
                    server_hostname=origin.host if tls is not None and proxy is None else None,
                )
                break
            except ssl.SSLError:
                raise
            except OSError as e:
                failure = e
        else:
            raise Failure(f"{_reason(failure)} ({_netloc(host, port)})")
        if proxy is not None and tls is not None:
            try:
                await self._tunnel(loop, connection, origin, tls, timeout)
            except BaseException:
                connection.close()
                raise
        return connection

    async def _resolve(self, host: str, port: int) -> list[tuple]:
        """(family, address) of `host`: itself if it is an IP address (remembered in `_literals`, which `_open`
        looks in first), else one lookup shared by all who ask now."""
        key = (host, port)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            literal = self._literals[key] = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
            return literal
        pending = self._resolving.get(key)
        if pending is None:
            pending = self._resolving[key] = asyncio.ensure_future(self._lookup(host, port))
            pending.add_done_callback(lambda f: (self._resolving.pop(key, None), f.cancelled() or f.exception()))
        return await asyncio.shield(pending)

    @staticmethod
    async def _lookup(host: str, port: int) -> list[tuple]:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise Failure(f"cannot find host {host} ({e.strerror or e})") from None
        return [(family, address) for family, _, _, _, address in found]

    async def _tunnel(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: Connection,
        origin: Origin,
        tls: ssl.SSLContext,
        timeout: float,
    ) -> None:
        """Ask the proxy for a tunnel to `origin`, then speak TLS through it."""
        target = _netloc(origin.host, origin.port).encode("idna")
        head = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n"
        if origin.proxy.auth:
            head += b"Proxy-Authorization: " + basic(origin.proxy.auth) + b"\r\n"
        status = await connection.tunnel(head + b"\r\n", timeout)
        if status != 200:
            raise Failure(f"the proxy {_netloc(origin.proxy.host, origin.proxy.port)} refused a tunnel: {status}")
        transport = await loop.start_tls(connection.transport, connection, tls, server_hostname=origin.host)
        connection.transport = transport

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def basic(auth: str) -> bytes:
    """The value of a Proxy-Authorization header for `auth` ("user:password")."""
    return b"Basic " + base64.b64encode(auth.encode())


def _expire(task: asyncio.Task, expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(e: OSError | None) -> str:
    """Why a connect failed: asyncio's "Connect call failed" names no reason, its errno does."""
    if e is None:
        return "no address to connect to"
    if isinstance(e.errno, int) and e.errno > 0:
        return os.strerror(e.errno)
    return e.strerror or str(e) or type(e).__name__
