"""Stored values: a record-format byte and a CRC32 around a msgpack payload.

    +---------+-----------------+------------------+
    | version |  CRC32 (u32 BE) |  msgpack payload |
    +---------+-----------------+------------------+

A value whose checksum does not match, whose payload does not decode, or whose
version is unknown is never read as something else: `decode` raises BadValue
and the store turns it into a CorruptRecord naming the key.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack

from weft.runtime import records

RECORD_VERSION = 1
_HEADER = struct.Struct(">BI")


class BadValue(Exception):
    """A stored value that cannot be trusted; the message says why."""


def encode(value: Any) -> bytes:
    """Serialize plain data (dict, list, str, int, float, bool, None, bytes); BadValue if it cannot be."""
    try:
        payload = records.pack(value)
    except records.Unstorable as e:
        raise BadValue(f"value cannot be stored: {e}") from None
    return _HEADER.pack(RECORD_VERSION, zlib.crc32(payload)) + payload


def decode(raw: bytes) -> Any:
    """The value `encode` produced; BadValue if the bytes were altered."""
    if len(raw) < _HEADER.size:
        raise BadValue(f"{len(raw)} bytes is too short for a record")
    version, crc = _HEADER.unpack_from(raw)
    payload = memoryview(raw)[_HEADER.size :]
    if version != RECORD_VERSION:
        raise BadValue(f"unknown record version {version}")
    if zlib.crc32(payload) != crc:
        raise BadValue("checksum mismatch")
    try:
        return records.unpack(payload)
    except (ValueError, msgpack.UnpackException) as e:
        raise BadValue(f"undecodable payload ({e})") from None
