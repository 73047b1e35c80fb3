"""A local HTTP/1.1 server for benchmarks: every request is answered `{}` after DELAY seconds.

    python benchmarks/slow_server.py DELAY     # prints its port, then serves until killed

It runs in a process of its own, on uvloop when installed, with one
asyncio.Protocol per connection and a timer per request (no coroutine, no
stream): answering 10,000 connections at once costs it about 0.3 s of CPU, so
the benchmarks measure the client. Keep-alive, pipelined requests answered in
order; several listening sockets on one port (SO_REUSEPORT) with the largest
backlog, so 10,000 connections opened at once do not overflow an accept queue
(an overflow costs the client a SYN retransmitted a second later).
"""

from __future__ import annotations

import asyncio
import socket
import sys

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
LISTENERS = 4
BACKLOG = 65535  # the kernel caps it at net.core.somaxconn


class Answer(asyncio.Protocol):
    """One connection: each request's head (requests here have no body) is answered DELAY seconds after it came."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop, self.delay = loop, delay
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        heads = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4 :] if heads else data
        for _ in range(heads):
            self.loop.call_later(self.delay, self.reply)

    def reply(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(REPLY)


async def main(delay: float) -> None:
    loop = asyncio.get_running_loop()
    first = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG, reuse_port=True)
    port = first.getsockname()[1]
    sockets = [first] + [
        socket.create_server(("127.0.0.1", port), backlog=BACKLOG, reuse_port=True) for _ in range(LISTENERS - 1)
    ]
    for sock in sockets:
        await loop.create_server(lambda: Answer(loop, delay), sock=sock, backlog=BACKLOG)
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(float(sys.argv[1])))
    else:
        uvloop.run(main(float(sys.argv[1])))
