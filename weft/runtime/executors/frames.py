"""Messages between an executor and a process running its tasks: length-prefixed msgpack frames.

+--------------------+------------------+
| length (u32 BE)    |  msgpack payload |
+--------------------+------------------+
"""

from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

from weft.runtime.records import pack, unpack

_LENGTH = struct.Struct(">I")


def write(out: BinaryIO, message: dict[str, Any]) -> None:
    """Send one message (plain data) and flush it."""
    payload = pack(message)
    out.write(_LENGTH.pack(len(payload)) + payload)
    out.flush()


class Reader:
    """Reads frames from file descriptor `fd` as they arrive, without blocking past what is there."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False
        self._buffer = bytearray()

    def read(self) -> list[dict[str, Any]]:
        """The messages complete after one read (call when `fd` is readable); `closed` at end of file."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.closed = True
        self._buffer += chunk
        found = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < _LENGTH.size + size:
                break
            found.append(unpack(bytes(self._buffer[_LENGTH.size : _LENGTH.size + size])))
            del self._buffer[: _LENGTH.size + size]
        return found
