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
from collections.abc import Iterable, Iterator
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


def leading_texts(pairs: Iterable[tuple[bytes, bytes]], field: bytes) -> Iterator[tuple[bytes, bytes, str | None]]:
    """(key, stored value, the value of the record's first field) of each (key, stored value): read without decoding the
    rest when that field is `field` and its value a short string (the states of a run's 50,000 step records
    in a fraction of the time), else None. The checksum is checked all the same: None for an altered value."""
    h = _HEADER.size
    tag = bytes([0xA0 | len(field)]) + field
    at = h + 1 + len(tag)  # after the map's header byte and the key
    crc, header, texts = zlib.crc32, _HEADER.unpack_from, {}
    for key, raw in pairs:
        text = None
        if raw[h + 1 : at] == tag and 0x80 <= raw[h] <= 0x8F and len(raw) > at:
            end = at + 1 + raw[at] - 0xA0
            if at < end <= min(len(raw), at + 32) and header(raw) == (RECORD_VERSION, crc(memoryview(raw)[h:])):
                value = raw[at + 1 : end]
                text = texts.get(value)
                if text is None:
                    try:
                        text = texts[value] = value.decode()
                    except UnicodeDecodeError:
                        pass
        yield key, raw, text
