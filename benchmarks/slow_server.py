"""A local HTTP/1.1 server for benchmarks: every request is answered `{}` after DELAY seconds.

    python benchmarks/slow_server.py DELAY     # prints its port, then serves until killed

asyncio, keep-alive, several listening sockets on one port (SO_REUSEPORT), so
10,000 connections opened at once do not overflow one accept queue.
"""

from __future__ import annotations

import asyncio
import socket
import sys

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
LISTENERS = 4


async def main(delay: float) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(delay)
                writer.write(REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    first = socket.create_server(("127.0.0.1", 0), backlog=65535, reuse_port=True)
    port = first.getsockname()[1]
    sockets = [first] + [
        socket.create_server(("127.0.0.1", port), backlog=65535, reuse_port=True) for _ in range(LISTENERS - 1)
    ]
    servers = [await asyncio.start_server(answer, sock=s) for s in sockets]
    print(port, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))
