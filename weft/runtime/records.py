"""What the runtime can store: plain data that msgpack serializes (every backend stores exactly that)."""

from __future__ import annotations

import threading
from typing import Any

import msgpack

_mine = threading.local()  # each thread's Packer: msgpack.packb makes and frees a 256 KiB buffer per call
_BUFFER = 16 << 10  # bytes a thread's Packer starts with
_KEEP = 64 << 10  # a Packer whose buffer grew past this for a big value is let go, with its buffer


class Unstorable(ValueError):
    """A value that is not plain data (dict, list, str, int, float, bool, None, bytes)."""


def pack(value: Any) -> bytes:
    """`value` as msgpack bytes; Unstorable if it is not plain data."""
    packer = getattr(_mine, "packer", None)
    if packer is None:
        packer = _mine.packer = msgpack.Packer(use_bin_type=True, buf_size=_BUFFER)
    try:
        data = packer.pack(value)
    except (TypeError, ValueError, OverflowError) as e:  # (the Packer drops what it had packed)
        raise Unstorable(str(e)) from None
    if len(data) > _KEEP:
        _mine.packer = None
    return data


def unpack(data: bytes | memoryview) -> Any:
    """The value `pack` made (tuples come back as lists, as from any store)."""
    return msgpack.unpackb(data, raw=False)


def check_serializable(value: Any) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    try:
        pack(value)
    except Unstorable as e:
        return str(e)
    return None
