"""A data file shorter than its last commit says, found before it is mapped: reading a page past the end of a
mapped file kills the process (SIGBUS), with no message, `weft doctor` too.

LMDB's two meta pages (page 0 and 1) each hold the transaction id of a commit and the last page it used; the
newer of the two valid ones says how long the file must be. Their layout (lmdb.h, MDB_meta): after a 16-byte
page header, the magic (u32), the version (u32), the map address (8), the map size (8), two databases of 48
bytes each, of which the first's first field holds the page size, then the last page (u64) and the
transaction id (u64); in the machine's byte order.
"""

from __future__ import annotations

import struct

_HEADER = 16
_MAGIC = 0xBEEFC0DE
_META = struct.Struct("=II8x8xI44x48xQQ")  # magic, version, page size (the free pages db's pad), last page, txnid


def _meta(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(page size, last page, txnid) of the meta page at offset `at`, None if it is not one."""
    if len(data) < at + _HEADER + _META.size:
        return None
    magic, _, size, last, txnid = _META.unpack_from(data, at + _HEADER)
    return (size, last, txnid) if magic == _MAGIC and size >= 512 and size & (size - 1) == 0 else None


def shortfall(path: str, length: int) -> str | None:
    """Why data file `path` of `length` bytes cannot be mapped safely (shorter than its newest commit's last
    page ends), or None (it can, or its meta pages are not readable: LMDB itself then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER + _META.size)
            first = _meta(head, 0)
            if first is None:
                return None
            f.seek(first[0])
            second = _meta(f.read(_HEADER + _META.size), 0)
    except OSError:
        return None
    newest = max((m for m in (first, second) if m is not None), key=lambda m: m[2])
    needed = (newest[1] + 1) * newest[0]
    if length >= needed:
        return None
    return f"its data file is {length:,} bytes, shorter than the {needed:,} its last commit wrote (truncated?)"
